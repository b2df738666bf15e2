"""Projections of latent vectors for the latent-space views (../shared/spec/visuals.md), and the
latents of stored runs under attack (the "Perturbation" views), cached per (run, attack, ε)."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch


def class_centres(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None) -> np.ndarray:
    """The three centres a view is drawn around: the objective's fixed geometry if it has one
    (GCCS vertices), else the class means of the latents (CE)."""
    if geometry is not None:
        return np.asarray(geometry, dtype=np.float64)[classes]
    return np.stack([z[y == c].mean(0) if np.any(y == c) else np.zeros(z.shape[1]) for c in classes])


def plane_basis(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origin and orthonormal basis (2, D) of the plane through three centres (Gram–Schmidt)."""
    origin = centres.mean(0)
    u = centres[1] - centres[0]
    u = u / max(np.linalg.norm(u), 1e-12)
    w = centres[2] - centres[0]
    w = w - (w @ u) * u
    w = w / max(np.linalg.norm(w), 1e-12)
    return origin, np.stack([u, w])


def simplex_view(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None):
    """Points of the three classes and their centres projected onto the plane through the centres.

    Returns (points (n, 2), labels (n,), vertices (3, 2)).
    """
    z = np.asarray(z, dtype=np.float64)
    mask = np.isin(y, classes)
    centres = class_centres(z, y, classes, geometry)
    origin, basis = plane_basis(centres)
    return (z[mask] - origin) @ basis.T, y[mask], (centres - origin) @ basis.T


def region_boundaries(vertices: np.ndarray, reach: float) -> np.ndarray:
    """The boundaries between the three nearest-centre regions of the simplex plane: three rays from
    the circumcentre, each equidistant from two vertices and pointing away from the third, ``reach``
    long. For GCCS (vertices of equal norm) these are its decision boundaries among the three
    classes; for a learned geometry they are the nearest-centre rule's. Returns (3, 2, 2): per ray
    its start and end point."""
    a, b, c = np.asarray(vertices, dtype=np.float64)
    d = 2 * (a[0] * (b[1] - c[1]) + b[0] * (c[1] - a[1]) + c[0] * (a[1] - b[1]))
    if abs(d) < 1e-12:  # collinear centres: no triangle, no circumcentre
        return np.zeros((0, 2, 2))
    sq = [p @ p for p in (a, b, c)]
    centre = np.array([sq[0] * (b[1] - c[1]) + sq[1] * (c[1] - a[1]) + sq[2] * (a[1] - b[1]),
                       sq[0] * (c[0] - b[0]) + sq[1] * (a[0] - c[0]) + sq[2] * (b[0] - a[0])]) / d
    rays = []
    for p, q, other in ((a, b, c), (b, c, a), (c, a, b)):
        direction = np.array([-(q - p)[1], (q - p)[0]])
        direction /= np.linalg.norm(direction)
        if direction @ (other - p) > 0:  # on the ray, p and q must stay nearer than the third vertex
            direction = -direction
        rays.append([centre, centre + reach * direction])
    return np.array(rays)


EMBEDDINGS = ("pca", "t-sne")


def embedding_2d(z: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Every class's points in two dimensions (visuals.md: a view of all classes beside the simplex
    view of three). "pca": the two directions of largest variance (linear: distances along them are
    the latent's own); "t-sne": scikit-learn's t-SNE (perplexity 30, PCA start, seeded), which keeps
    neighbourhoods, not distances: a few seconds for 1,000 points. Returns (n, 2)."""
    z = np.asarray(z, dtype=np.float64)
    if method == "pca":
        centred = z - z.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        out = centred @ vt[:2].T
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))  # a 1-D latent: the second axis is 0
    if method == "t-sne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(z) - 1) / 3))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
    raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}; got {method!r}")


def coords_3d(z: np.ndarray, y: np.ndarray, classes: list[int], geometry: np.ndarray | None):
    """Three coordinates of the three classes' points, and their centres in the same coordinates.

    Latents with one dimension per class (GCCS, CE, I-SCE, PCL logits): the coordinates
    (z_a, z_b, z_c), with the GCCS vertices μ_T·e_a … or the class means. Latents of another
    dimension (MMC, MAT, centre loss): the 3-D subspace spanned by the three centres (orthonormal
    basis by QR), which contains the simplex of those three centres undistorted.
    Returns (points (n, 3), labels (n,), centres (3, 3), axis names).
    """
    z = np.asarray(z, dtype=np.float64)
    mask = np.isin(y, classes)
    centres = class_centres(z, y, classes, geometry)
    num_classes = len(geometry) if geometry is not None else int(y.max()) + 1
    if z.shape[1] == num_classes:
        return z[mask][:, classes], y[mask], centres[:, classes], [f"z_{c}" for c in classes]
    basis, _ = np.linalg.qr(centres.T)  # (D, 3): spans the three centres
    return z[mask] @ basis, y[mask], centres @ basis, ["centre axis 1", "centre axis 2", "centre axis 3"]


# --- latents under attack (visuals.md, "Perturbation") -------------------------------------------------
TRAJECTORY_POINTS = 60  # samples whose latents are recorded at every iteration of the attack


def attacked_latents(model, objective, x, y, attack: str, params: dict[str, Any], eps: float,
                     trajectory_points: int = TRAJECTORY_POINTS, batch_size: int = 100, cancel=None,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Latents and predictions of ``x`` after ``attack`` at ``eps``, and the per-sample trajectories.

    The trajectories are the latents of the first ``trajectory_points`` samples at every forward pass
    the attack makes on its full batch (for PGD-like attacks: the random start and every iterate,
    MMC Fig. 3(b)), preceded by the clean latent and followed by the final one.
    Returns z (N, D) float32, pred (N,), trajectory (T, M, D) float32.
    """
    from .attacks import build_attack

    model.eval()
    objective.eval()
    atk = build_attack(attack, model, objective, eps, **params) if eps > 0 else None
    zs, preds, recorded = [], [], []
    m = min(trajectory_points, len(y))
    for i in range(0, len(y), batch_size):
        if cancel is not None and cancel.is_set():
            raise InterruptedError("cancelled")
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if atk is None:
            xa = xb
        elif i == 0:
            def record(_module, _inputs, out, size=len(xb)):
                if out.shape[0] == size:  # the attack's own forward passes on this batch, not probes
                    recorded.append(out[:m].detach().float().cpu())
            handle = model.register_forward_hook(record)
            try:
                xa = atk(xb, yb)
            finally:
                handle.remove()
        else:
            xa = atk(xb, yb)
        with torch.no_grad():
            z = model(xa)
            preds.append(objective.test_predictions(model, xa, z).cpu())
            if i == 0:
                clean = model(xb[:m]).float().cpu()
                recorded = [clean] + recorded + [z[:m].float().cpu()]
            zs.append(z.float().cpu())
        if progress is not None:
            progress(min(i + batch_size, len(y)), len(y))
    return {"z": torch.cat(zs).numpy(), "pred": torch.cat(preds).numpy(),
            "trajectory": torch.stack(recorded).numpy()}


def shift_point(store, run_id: str, model, objective, x, y, attack: str, params: dict[str, Any], eps: float,
                seed: int = 0, force: bool = False, cancel=None, progress=None,
                samples: int | None = None) -> tuple[dict[str, Any], bool]:
    """``attacked_latents`` of one run at one ε, from the store when cached, else computed and stored.
    ``samples``: the subset size asked for, which names the entry (default len(y); a small test split
    gives fewer points than asked, and the page asks with the number the user typed)."""
    from .robustness import cached_point

    def compute() -> dict[str, Any]:
        out = attacked_latents(model, objective, x, y, attack, params, eps, cancel=cancel, progress=progress)
        labels = y.cpu().numpy()
        return {**out, "y": labels, "points": len(y), "accuracy": float((out["pred"] == labels).mean())}

    settings = shift_settings(attack, params, eps, len(y) if samples is None else samples, seed)
    return cached_point(store, run_id, "shift", settings, x.device, force, compute)


def shift_job(store, run_ids: list[str], attack: str, params: dict[str, Any], eps: list[float],
              samples: int = 1000, seed: int = 0, force: bool = False, device="cpu", data_dir=None,
              on_event: Callable[[dict], None] | None = None, cancel=None) -> dict[str, Any]:
    """Latents of several runs under one attack at every ε of a grid (ε = 0 included: the clean
    latents), on the fixed test subset the training snapshots show (``engine.train.fixed_subset``).
    Events and cancellation as ``engine.robustness.sweep_job``; each (run, ε) is cached at once.
    Returns {"points": [result dicts without the arrays]}."""
    from .attacks import single_run_params
    from .robustness import load_for_evaluation
    from .train import Cancelled, fixed_subset

    emit = on_event or (lambda event: None)
    params = single_run_params(attack, params, "the latents under attack")
    loaded, x, y = load_for_evaluation(store, run_ids, None, device, data_dir)
    subset = fixed_subset(len(y), samples).to(x.device)
    x, y = x[subset], y[subset]
    grid = sorted(set([0.0] + [float(e) for e in eps]))
    total = len(grid) * len(run_ids) * len(y)
    emit({"type": "sweep-start", "runs": [{"run_id": r, "objective": loaded[r][2]["objective"]} for r in run_ids],
          "attack": attack, "params": params, "eps": grid, "samples": len(y), "points": len(grid) * len(run_ids),
          "class_names": loaded[run_ids[0]][2]["class_names"]})
    done, points = 0, []
    started = time.perf_counter()
    for e in grid:
        for run_id in run_ids:
            model, objective, _ = loaded[run_id]

            def progress(n: int, _total: int, base=done) -> None:
                rate = (base + n) / max(time.perf_counter() - started, 1e-9)
                emit({"type": "sweep-progress", "done": base + n, "total": total, "eta": (total - base - n) / rate})

            try:
                result, cached = shift_point(store, run_id, model, objective, x, y, attack, params, e, seed, force,
                                             cancel, progress, samples=samples)
            except InterruptedError:
                raise Cancelled("cancelled by the user") from None
            done += len(y)
            summary = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
            points.append(summary)
            emit({"type": "point", "result": summary, "cached": cached})
    return {"points": points}


def shift_settings(attack: str, params: dict[str, Any], eps: float, samples: int, seed: int = 0) -> dict[str, Any]:
    return {"attack": attack, "params": dict(params), "eps": float(eps), "samples": int(samples), "seed": seed}


def cached_shift(store, run_id: str, attack: str, params: dict[str, Any], eps: float, samples: int,
                 seed: int = 0) -> dict[str, Any] | None:
    """The stored latents of one run under one attack at one ε, or None (never computes)."""
    from cache.points import stored

    return stored(store, run_id, "shift", shift_settings(attack, params, eps, samples, seed))


def shift_view(clean: dict[str, Any], attacked: dict[str, Any], y: np.ndarray, classes: list[int],
               geometry: np.ndarray | None, distance: str = "centre") -> dict[str, Any]:
    """What one panel draws for one run at one ε: the three classes' clean and attacked latents in the
    plane through the three clean centres (the same plane at every ε, so points move and axes stay),
    the trajectories in that plane, the distance of every point to its own centre (the objective's
    centre, else the clean class mean; ``distance="norm"``: ‖z‖) clean and attacked, the accuracy at
    this ε and the fraction of points whose decision changed (they left their decision region).
    """
    z0, z1 = np.asarray(clean["z"], np.float64), np.asarray(attacked["z"], np.float64)
    y = np.asarray(y)
    num_classes = len(geometry) if geometry is not None else int(y.max()) + 1
    centres_all = (np.asarray(geometry, np.float64) if geometry is not None else
                   np.stack([z0[y == c].mean(0) if np.any(y == c) else np.zeros(z0.shape[1])
                             for c in range(num_classes)]))
    origin, basis = plane_basis(centres_all[classes])
    mask = np.isin(y, classes)
    m = attacked["trajectory"].shape[1]
    traj_mask = mask[:m]
    if distance == "norm":
        d0, d1 = np.linalg.norm(z0, axis=1), np.linalg.norm(z1, axis=1)
    else:
        d0, d1 = np.linalg.norm(z0 - centres_all[y], axis=1), np.linalg.norm(z1 - centres_all[y], axis=1)
    return {
        "clean": (z0[mask] - origin) @ basis.T, "attacked": (z1[mask] - origin) @ basis.T, "labels": y[mask],
        "vertices": (centres_all[classes] - origin) @ basis.T,
        "trajectory": (np.asarray(attacked["trajectory"], np.float64)[:, traj_mask] - origin) @ basis.T,
        "trajectory_labels": y[:m][traj_mask],
        "distance_clean": d0, "distance_attacked": d1,
        "accuracy": float((np.asarray(attacked["pred"]) == y).mean()),
        "left_region": float((np.asarray(attacked["pred"]) != np.asarray(clean["pred"])).mean()),
        "eps": attacked["eps"],
    }


def cached_shift_grid(store, run_id: str, attack: str, params: dict[str, Any], samples: int,
                      seed: int = 0) -> list[float]:
    """The ε values at which the latents of ``run_id`` under this attack are in the store."""
    wanted = shift_settings(attack, params, 0.0, samples, seed)
    return sorted({r["eps"] for r in store.list_results(run_id, "shift")
                   if all(r.get(k) == v for k, v in wanted.items() if k != "eps")})
