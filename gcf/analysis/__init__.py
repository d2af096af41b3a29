"""Predict, localize and explain: the by-products of the clip attention (paper 3.1, 4.6)."""
