"""Clip sampling rules shared by the decoder (gcf.extract.video) and the store (clip geometry it records); no
decoder or store imports, so both sides and the torch-free store CLI use them."""

from __future__ import annotations

from gcf.errors import GcfError


def check_sampling(clip_len: int, stride: int, frame_step: int) -> None:
    """Refuse overlapping clips whose frames fall between each other's (stride not a multiple of frame_step):
    windows would ask the sequential decoder for frames it has passed."""
    if frame_step > 1 and stride < clip_len * frame_step and stride % frame_step:
        near = max(frame_step, stride // frame_step * frame_step)
        raise GcfError(f"a stride of {stride} frames with a frame step of {frame_step}: overlapping clips need a "
                       f"stride that is a multiple of the frame step (e.g. {near}), or one of at least "
                       f"{clip_len * frame_step} (clip length x frame step)")

