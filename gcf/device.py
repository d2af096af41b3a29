"""The --device option of every command that runs torch: checked once, at the boundary."""

from __future__ import annotations


def check_device(device: str) -> None:
    """Raise GcfError in one line unless `device` is cpu, or a CUDA device torch can use."""
    import torch

    from gcf.errors import GcfError

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise GcfError(f"--device {device}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GcfError(f"--device {device}: CUDA is not available to torch {torch.__version__}; use --device cpu")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise GcfError(f"--device {device}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}; "
                       "use one of them or --device cpu")
    if dev.type == "cpu" and dev.index not in (None, 0):
        raise GcfError(f"--device {device}: the CPU has no device index; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise GcfError(f"--device {device}: only cpu and cuda are supported")
