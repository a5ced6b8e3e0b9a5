"""Streaming 2D classification: :class:`Class2D` keeps K class averages and updates them as
batches of particles arrive.

Model (RELION's and cryoSPARC's, :mod:`._em`): each particle is one class average, turned by
an in-plane rotation, shifted, multiplied by its CTF (``|CTF|`` for phase-flipped data), plus
Gaussian noise with a power per Fourier ring. The E-step scores every class, rotation and
shift (a grid inside ``max_shift_px``) at a resolution limit that follows the classes' own
(the FRC of half-set averages, split by particle id parity); the M-step adds each particle's
CTF-weighted, aligned spectrum to the sums of the classes it belongs to (weighted by the
posterior), and class averages are ``sum(CTF X) / (sum CTF^2 + 1/SSNR)``
(:mod:`.averages`). Images are binned (Fourier-cropped) once, on arrival, to a working box
whose Nyquist is ``max_resolution_angstrom / 2.5``.

Schedule (online, stepwise EM): a batch is scored against the current classes and its sums
added to theirs (after multiplying the old sums by ``1 - forget``); nothing restarts. A full
pass (:meth:`Class2D.reassign_all`: every stored particle scored again, the sums rebuilt from
them, so each particle's old contribution is replaced) follows every batch while at most
``full_pass_below`` particles are stored, and every ``full_pass_every`` batches after that.
The classes start, once ``start_after`` particles are stored, from single random particles
(centred, low-passed at ``initial_resolution_angstrom``) followed by ``initial_passes`` full
passes. After each full pass, classes with less than ``min_class_fraction`` of an even share
are re-seeded, each from the worst-explained particles of one class that explains its members
least evenly (a split: :meth:`Class2D._reseed_empty`), and classes are centred on their
centre of mass. Particles that their image alone marks as junk (:class:`Assignment`) take
no part in the sums of classes where they are the minority. Before the sums of a full pass,
each class is split in two at its members' poses; where the parts are two populations, the
smaller is scored again against the classes with the larger part's average in its class's
place, and goes where that puts it (:mod:`._split`: ice blobs the size of a view leave it).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from causalscope.models.classification._em import (
    ClassSums,
    EStep,
    accumulate,
    expectation,
    on_device,
    rotated_references,
)
from causalscope.models.classification._grids import Grid, shift_spectra
from causalscope.models.classification._outliers import (
    background_statistics,
    particle_flags,
    split_seeds,
)
from causalscope.models.classification._settings import Assignment, Class2DSettings
from causalscope.models.classification._split import MixedClass, mixed_classes
from causalscope.models.classification._tensors import MemoryRows, OnDevice, RowStore
from causalscope.models.classification.averages import (
    frc_first_crossing_angstrom,
    half_set_frc,
    mass_centre_px,
    snr_from_frc,
    wiener_from_snr,
)
from causalscope.models.reconstruction.alignment import shift_grid
from causalscope.models.reconstruction.particle_ctf import ParticleCtfs
from causalscope.models.reconstruction.resample import fourier_crop

__all__ = ["Assignment", "Class2D", "Class2DSettings"]

_SCORES_PER_CHUNK = 16_000_000  # (particles x shifts x classes x rotations) per E-step call
_PER_SEED = 8  #: particles in a re-seeded class (:meth:`Class2D._reseed_empty`)
_SUPPORT = 2.0  #: particles' weight per half set that an average needs (:meth:`unsupported`)
#: within-class robust sigma (:func:`._outliers.robust_z`) >= this share of the pooled one
_SIGMA_FLOOR = 0.75


class Class2D(OnDevice):
    """K class averages updated batch by batch (module docstring).

    Parameters
    ----------
    box_px, pixel_size_angstrom
        Box and pixel of the images that will be given.
    settings
        :class:`Class2DSettings`.
    device
        Where its tensors live and it computes (:class:`._tensors.OnDevice`); images arrive
        on the CPU, batch by batch, and what it answers is on the CPU.
    store
        An empty :class:`~._tensors.RowStore` for the binned images (16 KB per particle at 64
        px; host memory by default). It stays on the host and goes to the device a chunk at a
        time, so that the device's memory does not grow with the session.
    """

    def __init__(
        self,
        *,
        box_px: int,
        pixel_size_angstrom: float,
        settings: Class2DSettings | None = None,
        device: torch.device | str = "cpu",
        store: RowStore | None = None,
    ) -> None:
        if box_px < 16 or box_px % 2:
            raise ValueError(f"box_px must be even and >= 16, got {box_px}")
        if store is not None and len(store):
            raise ValueError(f"the store must start empty, it holds {len(store)} rows")
        self.settings = settings or Class2DSettings()
        s = self.settings
        self.box_px, self.pixel_size_angstrom = box_px, pixel_size_angstrom
        target = s.max_resolution_angstrom / 2.5
        work = min(box_px, 2 * math.ceil(box_px * pixel_size_angstrom / target / 2))
        self.grid = Grid.of(max(work, 16), box_px * pixel_size_angstrom / max(work, 16))
        self.binning = box_px / self.grid.box
        self.shifts = shift_grid(s.max_shift_px / self.binning, s.shift_step_px / self.binning)
        self._binned: RowStore = MemoryRows() if store is None else store  # binned images
        self._ctfs: list[ParticleCtfs] = []
        self._ids: list[np.ndarray] = []
        self._chi2, self._log_power = torch.zeros(0), torch.zeros(0)
        self._in_plane = torch.zeros(0)  # :meth:`EStep.in_plane_ratio` at the last assignment
        self._in_plane_expected = torch.zeros(0)  # its class average's own gap
        self._halo = np.zeros(0)
        self._structure = np.zeros(0)  # of the background: :func:`._outliers.background_statistics`
        self._mass = np.zeros(0)  # each image's mean: its projected mass, whatever the view
        self._classes = np.zeros(0, dtype=int)
        #: flagged as junk by the image alone (halo, mass, power): left out of the sums
        self._junk_alone = np.zeros(0, dtype=bool)
        #: flagged by their in-plane contrast alone (:func:`._outliers.flat_outliers`)
        self._flat = np.zeros(0, dtype=bool)
        self.sums = ClassSums.zeros(s.n_classes, self.grid.box)
        self.references = torch.zeros(s.n_classes, self.grid.box, self.grid.box)
        self.frc = torch.zeros(s.n_classes, self.grid.n_rings)
        self.sigma2 = torch.ones(self.grid.n_rings)
        self._noise_fallback = torch.ones(self.grid.n_rings)
        self.r_max = self.grid.ring_of(s.initial_resolution_angstrom)
        self.started = False
        #: the assignment of every stored particle by the last full pass (None before one)
        self.last_full_pass: Assignment | None = None
        self._batches_since_full = 0
        self._rng = np.random.default_rng(s.seed)
        self.to(device)

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickled (a saved evaluator's state): one saved before the image-alone flags has
        none set, and they are found again at the next assignment; the background's
        structure is measured again from the stored images."""
        images = state.pop("_images", None)  # saved before the store: a buffer, n_stored used
        super().__setstate__(state)
        if images is not None:
            self._binned = MemoryRows(torch.as_tensor(images)[: self.n_stored])
        if "_junk_alone" not in state:
            self._junk_alone = np.zeros(len(self._classes), dtype=bool)
        if "_structure" not in state:
            self._structure = self._background_of(self._binned.rows().to(self.device))[1]
        if "_in_plane" not in state:  # not judged until the next assignment
            self._in_plane = torch.ones(len(self._classes))
            self._in_plane_expected = torch.zeros(len(self._classes))
            self._flat = np.zeros(len(self._classes), dtype=bool)

    # --- public -------------------------------------------------------------------------

    @property
    def n_stored(self) -> int:
        """Particles seen so far."""
        return sum(len(i) for i in self._ids)

    def partial_fit(
        self, images: np.ndarray | torch.Tensor, ctf: ParticleCtfs, ids: np.ndarray
    ) -> Assignment:
        """Add a batch ``images`` ``(m, box, box)`` with its CTFs and unique integer ``ids``
        ``(m,)``; update the classes (schedule in the module docstring); return where the
        batch's particles went."""
        batch = self._store(images, ctf, ids)
        s = self.settings
        start_after = s.start_after or 4 * s.n_classes
        if not self.started:
            if self.n_stored < max(start_after, s.n_classes):
                return Assignment.unassigned(np.asarray(ids))
            self._start()
            return self._assign(self._estep(batch), batch)
        estep = self._estep(batch)
        assignment = self._assign(estep, batch)
        added = self._accumulate(batch, estep)
        self.sums = self.sums.scaled(1.0 - s.forget) + added
        self._update_noise(estep, replace=False)
        self._update_model()
        self._batches_since_full += 1
        if self.n_stored <= s.full_pass_below or self._batches_since_full >= s.full_pass_every:
            self.reassign_all()
            assignment = self._assign(self._estep(batch), batch)
        return assignment

    def reassign_all(self) -> Assignment:
        """Score every stored particle again and rebuild the sums from them (a full EM pass)."""
        everything = np.arange(self.n_stored)
        estep = self._estep(everything)
        assignment = self._assign(estep, everything)
        # the split sees the classes as the other flags leave them (_outliers.flat_outliers)
        mixed = self._mixed_classes(
            dataclasses.replace(assignment, outlier=assignment.outlier & ~self._flat)
        )
        if mixed:  # each minority scored against the classes without it
            references = self.references.clone()
            for found in mixed:
                references[found.class_index] = found.majority_average
            minority = np.concatenate([found.minority for found in mixed])
            estep = estep.with_rows(minority, self._estep(minority, references))
            assignment = self._assign(estep, everything)
        self.sums = self._accumulate(everything, estep)
        self._update_noise(estep, replace=True)
        self._update_model()
        self._reseed_empty()
        self._batches_since_full = 0
        self.last_full_pass = assignment
        return assignment

    def unsupported(self) -> np.ndarray:
        """``(K,)`` bool: classes whose average is a seed (:meth:`_reseed_empty`: round,
        whatever it holds) or the low-pass prior, not their particles' own."""
        return (self.sums.weight.min(dim=1).values < _SUPPORT).cpu().numpy()

    def averages(self) -> np.ndarray:
        """``(K, b, b)`` float32 class averages on the working grid (pixel
        ``self.grid.pixel_size_angstrom``), protein bright."""
        return self.references.cpu().numpy().astype(np.float32)

    def stored(self) -> tuple[torch.Tensor, ParticleCtfs, np.ndarray]:
        """Every stored particle: binned images (a view of the store, in host memory: not to
        be written to), CTFs and ids."""
        return (
            self._binned.rows(),
            ParticleCtfs.concatenate(self._ctfs),
            np.concatenate(self._ids),
        )

    # --- the steps ----------------------------------------------------------------------

    def _store(
        self, images: np.ndarray | torch.Tensor, ctf: ParticleCtfs, ids: np.ndarray
    ) -> np.ndarray:
        data = torch.as_tensor(np.asarray(images), dtype=torch.float32)
        ids = np.asarray(ids)
        if data.ndim != 3 or data.shape[1:] != (self.box_px, self.box_px):
            raise ValueError(
                f"images must be (m, {self.box_px}, {self.box_px}), got {tuple(data.shape)}"
            )
        if ids.shape != (data.shape[0],) or ctf.n != data.shape[0]:
            raise ValueError(f"ids {ids.shape} and ctf ({ctf.n}) must match {data.shape[0]} images")
        if abs(ctf.pixel_size_angstrom - self.pixel_size_angstrom) > 1e-6:
            raise ValueError(
                f"ctf pixel size {ctf.pixel_size_angstrom} != {self.pixel_size_angstrom}"
            )
        start, m = self.n_stored, data.shape[0]
        binned = fourier_crop(data.to(self.device), self.grid.box)
        self._binned.append(binned)
        self._ctfs.append(ctf)
        self._ids.append(ids)
        if len(self._ids) > 1:  # one array each, so indexing stays cheap
            self._ctfs = [ParticleCtfs.concatenate(self._ctfs)]
            self._ids = [np.concatenate(self._ids)]
        for name, fill in (("_chi2", 0.0), ("_log_power", 0.0), ("_in_plane", 1.0),
                           ("_in_plane_expected", 0.0)):  # fmt: skip
            more = torch.full((m,), fill, device=self.device)
            setattr(self, name, torch.cat([getattr(self, name), more]))
        halo, structure = self._background_of(binned)
        self._halo = np.concatenate([self._halo, halo])
        self._structure = np.concatenate([self._structure, structure])
        self._mass = np.concatenate([self._mass, binned.mean(dim=(1, 2)).double().cpu().numpy()])
        self._classes = np.concatenate([self._classes, np.full(data.shape[0], -1)])
        self._junk_alone = np.concatenate([self._junk_alone, np.zeros(data.shape[0], bool)])
        self._flat = np.concatenate([self._flat, np.zeros(data.shape[0], bool)])
        return np.arange(start, self.n_stored)

    def _start(self) -> None:
        """Classes from single random particles, then the initial full passes."""
        images, _ctf, _ = self.stored()
        spectra = torch.fft.rfft2(images.to(self.device))
        power = self.grid.ring_mean(spectra.abs() ** 2).mean(0)
        self._noise_fallback = power.clamp(min=1e-12)
        self.sigma2 = self._noise_fallback.clone()
        pick = self._rng.choice(len(images), size=self.settings.n_classes, replace=False)
        self._seed_classes(np.arange(self.settings.n_classes), pick)
        self.started = True
        for _ in range(self.settings.initial_passes):
            self.reassign_all()

    def _seed_classes(
        self, classes: np.ndarray, particles: np.ndarray, *, rotational: bool = False
    ) -> None:
        """Class ``classes[i]`` becomes particles ``particles[i]`` (``(n,)`` or ``(n, m)``:
        their CTF-weighted sum), rotationally averaged if ``rotational``."""
        images, ctf, _ = self.stored()
        groups = particles.reshape(len(classes), -1)
        transfer = ctf.transfer(self.grid.kx, self.grid.ky, index=groups.flatten())
        rows = on_device(images, groups.flatten(), self.device)
        spectra = (torch.fft.rfft2(rows) * transfer).to(torch.complex128)
        den = transfer.to(torch.float64) ** 2
        shape = (len(classes), groups.shape[1], *spectra.shape[-2:])
        spectra, den = spectra.reshape(shape).sum(1), den.reshape(shape).sum(1)
        if rotational:  # keep the zeroth angular harmonic (about b // 2): the ring means
            ring = self.grid.ring.clamp(max=self.grid.n_rings - 1)
            centre = torch.full((2,), float(self.grid.box // 2), device=self.device)
            ramp = shift_spectra(self.grid.fx, self.grid.fy, centre).to(torch.complex128)
            about_origin = self.grid.ring_mean((spectra * ramp.conj()).real)
            spectra = about_origin[:, ring].to(torch.complex128) * ramp
            den = self.grid.ring_mean(den)[:, ring]
        one_half = torch.tensor([1.0, 0.0], dtype=torch.float64, device=self.device)
        for i, k in enumerate(classes):  # in one half only: a seed has no resolution
            self.sums.num[k] = 0.0
            self.sums.den[k] = 0.0
            self.sums.num[k, 0] = spectra[i]
            self.sums.den[k, 0] = den[i]
            self.sums.weight[k] = self.sums.weight2[k] = one_half
        self._update_model()

    def _chunks(self, index: np.ndarray) -> list[np.ndarray]:
        per = self.shifts.shape[0] * self.settings.n_classes * self.settings.rotations(self.r_max)
        size = max(1, _SCORES_PER_CHUNK // per)
        return [index[i : i + size] for i in range(0, len(index), size)] or [index]

    def _estep(self, index: np.ndarray, references: torch.Tensor | None = None) -> EStep:
        images, ctf, _ = self.stored()
        psi = self._psi()
        band = self.grid.band(self.r_max)
        ref = rotated_references(self.references if references is None else references, psi, band)
        parts = []
        for chunk in self._chunks(index):
            spectra = torch.fft.rfft2(on_device(images, chunk, self.device))
            transfer = ctf.transfer(self.grid.kx, self.grid.ky, index=chunk)
            parts.append(
                expectation(
                    spectra,
                    transfer,
                    ref,
                    grid=self.grid,
                    sigma2=self.sigma2,
                    band=band,
                    shifts_px=self.shifts,
                    psi_rad=psi,
                )
            )
        fields = [f for f in EStep.__dataclass_fields__ if f != "psi_rad"]
        joined = {f: torch.cat([getattr(p, f) for p in parts]) for f in fields}
        return EStep(**joined, psi_rad=psi)

    def _accumulate(self, index: np.ndarray, estep: EStep) -> ClassSums:
        """The M-step's sums of the particles ``index``, but those their image alone marks as
        junk (:meth:`_assign`) in a class where they are the minority: a carbon edge flagged
        in a class of good particles would otherwise still print its edge into the class
        average. A class made mostly of such junk keeps it, so that its average shows what it
        is (the junk score and Novelty judge the class by it). (Particles flagged by their
        misfit to the class take part: left out, the average would explain them less at
        each pass, and on real ribosomes 5 % rather than 0.5 % ended flagged.)"""
        images, ctf, ids = self.stored()
        excluded = self._junk_alone[index].copy()
        classes = self._classes[index]
        for k in np.unique(classes[excluded]):
            members = self._classes == k
            if self._junk_alone[members].mean() >= 0.5:
                excluded[classes == k] = False
        if bool(excluded.any()):
            weight = estep.class_weight.clone()
            weight[torch.as_tensor(excluded, device=weight.device)] = 0.0
            estep = dataclasses.replace(estep, class_weight=weight)
        return accumulate(
            images, ctf, ids, estep, grid=self.grid, shifts_px=self.shifts,
            n_classes=self.settings.n_classes, index=index,
        )  # fmt: skip

    def _update_noise(self, estep: EStep, *, replace: bool) -> None:
        """Noise power per ring: the mean residual at the best pose inside the E-step's band,
        the particles' power spectrum beyond it."""
        inside = torch.arange(self.grid.n_rings, device=self.device)
        inside = (inside >= 1) & (inside <= self.r_max)
        measured = estep.noise_rings.mean(0).to(self.sigma2.dtype)
        if not replace:  # a running blend: the batch weighs by its share of the stored set
            share = estep.noise_rings.shape[0] / max(self.n_stored, 1)
            measured = (1 - share) * self.sigma2 + share * measured
        self.sigma2 = torch.where(inside, measured.clamp(min=1e-12), self._noise_fallback)

    def _update_model(self) -> None:
        """Class averages from the sums (Wiener, SNR from the half-set FRC), centred."""
        sums, grid = self.sums, self.grid
        frc = half_set_frc(sums.num, sums.den, grid).to(torch.float64)
        small = (sums.weight.min(dim=1).values < _SUPPORT)[:, None]
        prior = self._low_pass_snr()
        snr = torch.where(small, prior[None], snr_from_frc(frc))
        num, den = sums.num.sum(1), sums.den.sum(1)
        spectra = wiener_from_snr(num, den, snr, grid)
        spectra[..., 0, 0] = 0.0  # the normalisation makes the mean arbitrary
        self.references = torch.fft.irfft2(spectra, s=(grid.box, grid.box)).float()
        self.frc = frc.float()
        self._centre_classes()
        self.r_max = self._next_r_max()

    def _low_pass_snr(self) -> torch.Tensor:
        """SNR of a Gaussian low-pass at the initial resolution (classes with few particles)."""
        r0 = self.grid.ring_of(self.settings.initial_resolution_angstrom)
        rings = torch.arange(self.grid.n_rings, dtype=torch.float64, device=self.device)
        return (10.0 * torch.exp(-((rings / r0) ** 2))).clamp(min=1e-3)

    def _centre_classes(self) -> None:
        """Shift each class (its sums) so that its positive mass is centred."""
        b = self.grid.box
        offset = mass_centre_px(self.references)
        move = offset.norm(dim=-1) > 1.0
        if not bool(move.any()):
            return
        ramp = shift_spectra(self.grid.fx, self.grid.fy, -offset[move])
        self.sums.num[move] *= ramp[:, None].to(torch.complex128)
        moved = torch.fft.rfft2(self.references[move]) * ramp
        self.references[move] = torch.fft.irfft2(moved, s=(b, b))

    def _reseed_empty(self) -> None:
        """Classes below ``min_class_fraction`` of an even share start again, each from the
        worst-explained particles of one class that explains its members least evenly,
        rotationally averaged (:func:`._outliers.split_seeds`)."""
        s = self.settings
        weight = self.sums.weight.sum(1)
        threshold = max(s.min_class_fraction * self.n_stored / s.n_classes, 1.0)
        empty = torch.nonzero(weight < threshold).flatten().cpu().numpy()
        if empty.size == 0 or self._classes.size != self._chi2.numel():
            return
        large = (weight >= threshold).cpu().numpy()
        seeds = split_seeds(self._chi2.cpu().numpy(), self._classes, large, empty.size, _PER_SEED)
        if len(seeds):
            self._seed_classes(empty[: len(seeds)], seeds, rotational=True)

    def _mixed_classes(self, assignment: Assignment) -> list[MixedClass]:
        """The classes of two populations (:mod:`._split`)."""
        images, ctf, _ = self.stored()
        return mixed_classes(
            images, ctf, assignment, self._mass, binning=self.binning, grid=self.grid,
            sigma2=self.sigma2, prior_snr=self._low_pass_snr(),
        )  # fmt: skip

    # --- small helpers ------------------------------------------------------------------

    def _next_r_max(self) -> int:
        """The E-step's band: the best class resolution (FRC 0.143) plus a quarter and two
        rings, between the initial and the maximum resolution."""
        weight = self.sums.weight.sum(1)
        big = (weight >= weight.median()) & (self.sums.weight.min(dim=1).values >= _SUPPORT)
        best, frc = math.inf, self.frc.cpu()
        for k in torch.nonzero(big).flatten().tolist():
            res = frc_first_crossing_angstrom(
                frc[k], pixel_size_angstrom=self.grid.pixel_size_angstrom
            )
            best = min(best, res)
        r_lo = self.grid.ring_of(self.settings.initial_resolution_angstrom)
        r_hi = self.grid.ring_of(self.settings.max_resolution_angstrom)
        ring = self.grid.ring_of(best) if math.isfinite(best) else r_lo
        return int(min(max(round(1.25 * ring) + 2, r_lo), r_hi))

    def _psi(self) -> torch.Tensor:
        n = self.settings.rotations(self.r_max)
        return torch.arange(n, dtype=torch.float32, device=self.device) * (2 * math.pi / n)

    def _assign(self, estep: EStep, index: np.ndarray) -> Assignment:
        _, _, ids = self.stored()
        k = estep.class_weight.argmax(-1)
        rows = torch.arange(len(k), device=k.device)
        psi = estep.psi_rad[estep.best_rotation[rows, k]]
        shift = self.shifts[estep.best_shift[rows, k]] * self.binning
        r_low = self.grid.ring_of(self.settings.initial_resolution_angstrom)
        self._chi2[index] = estep.low_misfit(r_low)
        self._log_power[index] = estep.low_power(r_low).log()
        self._in_plane[index] = estep.in_plane_ratio().to(self._in_plane.dtype)
        self._in_plane_expected[index] = estep.in_plane_expected.to(self._in_plane.dtype)
        self._classes[index] = k.cpu().numpy()
        misfit, log_power, in_plane, expected = (t.cpu().numpy() for t in (
            self._chi2, self._log_power, self._in_plane, self._in_plane_expected))  # fmt: skip
        flags = particle_flags(
            misfit=misfit, log_power=log_power, mass=self._mass, halo=self._halo,
            structure=self._structure, in_plane=in_plane, in_plane_expected=expected,
            classes=self._classes, index=index, limit=self.settings.outlier_z,
            floor_share=_SIGMA_FLOOR,
        )  # fmt: skip
        self._junk_alone[index] = flags.alone
        self._flat[index] = flags.flat
        return Assignment(
            ids[index], self._classes[index].copy(), np.rad2deg(psi.cpu().numpy()) % 360.0,
            shift.cpu().numpy(), estep.class_weight[rows, k].cpu().numpy(), flags.z_misfit,
            flags.outlier,
        )  # fmt: skip

    def _background_of(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(halo, structure)`` of the working-grid ``images``
        (:func:`._outliers.background_statistics`)."""
        return background_statistics(
            images, pixel_size_angstrom=self.grid.pixel_size_angstrom,
            diameter_angstrom=self.settings.particle_diameter_angstrom,
        )  # fmt: skip
