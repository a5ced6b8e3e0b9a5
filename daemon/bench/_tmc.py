"""teamtomo's torch-motion-correction on a movie, for side-by-side benchmarks only.

It is not a dependency: ``pip install .[bench]`` installs it. Its recommended pipeline is run:
whole-frame cross-correlation (integer pixels, against the middle frame) to start, then its
gradient-based refinement of a spline deformation field with one control point in space per
frame, i.e. a global trajectory, with its default filters. Its field holds (y, x) in Angstrom
with the same sense as ours (checked on a simulated drift), so only the axes swap.
"""

from __future__ import annotations

import numpy as np

__all__ = ["run_torch_motion_correction"]


def run_torch_motion_correction(
    frames: np.ndarray, *, pixel_size_angstrom: float, device: str = "cpu"
) -> np.ndarray:
    """Global trajectory ``(F, 2)`` ``[x, y]`` in pixels relative to frame 0, our convention.

    Raises
    ------
    ImportError
        torch-motion-correction is not installed.
    """
    import contextlib
    import io

    import torch

    try:
        import torch_motion_correction as tmc
    except ImportError as error:
        raise ImportError(
            f"torch-motion-correction is not installed ({error}); pip install .[bench]"
        ) from error

    stack = torch.as_tensor(frames, dtype=torch.float32)
    n_frames, height, width = stack.shape
    field = tmc.estimate_global_motion(
        stack, pixel_spacing=pixel_size_angstrom, device=torch.device(device)
    )
    patch = min(512, height, width)
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        field, _ = tmc.estimate_local_motion(
            stack,
            pixel_spacing=pixel_size_angstrom,
            deformation_field_resolution=(n_frames, 1, 1),
            patch_sampling=tmc.PatchSamplingConfig(patch_shape=(patch, patch)),
            initial_deformation_field=field,
            device=torch.device(device),
        )
    data = field.data.detach().cpu().numpy()  # (2, t, nh, nw): (y, x) in Angstrom
    yx = data.reshape(2, n_frames, -1).mean(axis=-1).T / pixel_size_angstrom
    shifts = yx[:, ::-1]
    return np.asarray(shifts - shifts[0], dtype=np.float64)
