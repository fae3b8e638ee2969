"""Reproduce seed 000 (kinetic consensus segmentation): Tests 1-4, the quality grid, K = 3.

Regenerate::

    python benchmarks/kinetic_paper.py      # [--limit N] [--only test1,test2,...] [--wbc DIR]

``--wbc`` is the white-blood-cell dataset folder (default ``$PHYSEG_DATA/wbc``, see
:func:`physeg.data.datasets.data_root`), used by ``multiclass`` only.

Results: ``benchmarks/results/kinetic_paper.json`` and ``kinetic_paper.md``, one part per
section (running some sections with ``--only`` rewrites their parts and keeps the others);
figures as PNG beside them. Sections:

``test1``    DSMC against the Beta quasi-equilibrium (28) as eps -> 0 (features frozen).
``test2``    DSMC (space weighted by 1/delta) against the macroscopic model as delta -> 0.
``fitcmp``   which fitting loss to use: l2 (paper), dice, mixed; fitted on one noisy image,
             tested on another.
``table1``   Test 3.1: four shapes, Gaussian noise level 2 in the shape, 1 in the background;
             theta fitted with the paper's l2 loss; loss and Dice of the DSMC mask.
``table2``   Test 3.2: centred square, four noise types x four levels; l2 fit; loss and Dice.
``table3``   Test 4: RGB square with Gaussian noise; l2 fit of 6 parameters; mask averaged over
             10 DSMC runs.
``grid``     the acceptance grid: four shapes x four noise types x levels 1, 2 at 128^2 and
             256^2, Dice with default parameters and after a Dice fit on a *different* noisy
             image (a square, other seed).
``landscape`` Fig. 8: l2 and Dice losses over (r, cbar) for speckle noise.
``multiclass`` K = 3: three-level synthetic image and the white-blood-cell dev set.
``evolution`` feature-density evolution rho(t, c), macroscopic and DSMC (Figs. 6-7).

``--limit N`` shrinks every section (fewer cells / images / iterations) for a quick check.
All random streams are seeded; the numbers are reproducible on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import physeg  # noqa: E402
from physeg import metrics  # noqa: E402
from physeg.families.kinetic import _dsmc, _equilibrium, _macro  # noqa: E402
from physeg.data.noise import noisy_shape  # noqa: E402

RES = ROOT / "benchmarks" / "results"
KINDS = ("gaussian", "poisson", "uniform", "speckle")  # Table 2 column order
SHAPES = ("square", "circle", "triangle", "rhombus")

PAPER_T1 = {  # Table 1 (Delta, sigma, r, cbar, loss), read from the seed
    "square": (0.2903, 0.4685, 0.1549, 0.4778, 0.0226),
    "circle": (0.2138, 0.1537, 0.1350, 0.5140, 0.0249),
    "triangle": (0.1108, 0.1657, 0.0778, 0.5287, 0.0179),
    "rhombus": (0.1720, 0.1564, 0.0844, 0.5112, 0.0137),
}
PAPER_T2 = {  # Table 2 loss per intensity, columns Gaussian, Poisson, Uniform, Speckle
    1: (0.0135, 0.0781, 0.0781, 0.0066),
    2: (0.0226, 0.0755, 0.0780, 0.0061),
    3: (0.1209, 0.0887, 0.0766, 0.0636),
    4: (0.1595, 0.0888, 0.0752, 0.0876),
}
PAPER_T3 = (0.5742, 0.5016, 0.0493, 0.5413, 0.5488, 0.5533)


def dice(a, b) -> float:
    """Binary Dice of two masks (both empty: 1), :func:`physeg.metrics.dice`."""
    return float(metrics.dice(a, b, average="binary"))


def save(name: str, data: dict, md: str) -> None:
    """Store section ``name`` in ``kinetic_paper.json`` (other sections kept) and rewrite
    ``kinetic_paper.md`` from every stored section, in ``SECTIONS`` order."""
    RES.mkdir(parents=True, exist_ok=True)
    path = RES / "kinetic_paper.json"
    stored = json.loads(path.read_text()) if path.exists() else {"sections": {}}
    stored["sections"][name] = {"command": f"python benchmarks/kinetic_paper.py --only {name}",
                                "data": data, "md": md}
    path.write_text(json.dumps(stored, indent=2, default=float))
    write_markdown(stored)
    print(md, flush=True)


def write_markdown(stored: dict) -> None:
    """``kinetic_paper.md``: one part per section, headings one level down, each with the
    command that regenerates it (``--limit`` runs are marked by their command)."""
    lines = ["# Kinetic consensus segmentation: seed 000 reproduced (Tests 1-4, grid, K = 3)",
             "",
             "Regenerate: `python benchmarks/kinetic_paper.py` (every section; one section: "
             "`--only NAME`, which rewrites only that part). Figures are PNG files beside "
             "this one.", ""]
    secs = stored["sections"]
    for name in sorted(secs, key=lambda n: SECTIONS.index(n) if n in SECTIONS else 99):
        body = secs[name]["md"].rstrip().splitlines()
        body = [("#" + ln) if ln.startswith("#") else ln for ln in body]
        head, rest = (body[0], body[1:]) if body and body[0].startswith("#") else (
            f"## {name}", body)
        lines += [head, "", f"Regenerate: `{secs[name]['command']}`", *rest, ""]
    (RES / "kinetic_paper.md").write_text("\n".join(lines))


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as p

    return p


# ------------------------------------------------------------------------------ Test 1


def test1(limit: int | None) -> None:
    """DSMC marginals against the Beta quasi-equilibrium for eps = 0.5, 0.1, 0.02."""
    from scipy import stats

    rng = np.random.default_rng(0)
    n = 4000 if limit else 20000
    sigma = 0.3
    # Gaussian feature law N(0.5, 0.15^2) (clipped), spatially symmetric initial state
    c = np.clip(rng.normal(0.5, 0.15, n), 0, 1)
    x0 = rng.uniform(-0.6, 0.6, (n, 2))
    rows = []
    fig_data = {}
    eps_list = (0.5, 0.1, 0.02)
    T = 6.0
    for delta in (0.2, 2.0):
        for eps in eps_list:
            p = _dsmc.Particles(x=x0.copy(), c=c[:, None].copy(), shape=(1, n), h=0.02, x0=x0)
            r = np.random.default_rng(1)
            m_hist = []
            t0 = time.perf_counter()
            for step in range(int(round(T / eps))):
                _dsmc.space_step(p, delta=delta, sigma=sigma, eps=eps, prob=1.0, rng=r)
                if step % max(1, int(round(0.25 / eps))) == 0:
                    q = _equilibrium.conserved_quantities(p.x, p.c[:, 0], delta, 10)
                    m_hist.append(q["M"][:, 0].tolist())
            secs = time.perf_counter() - t0
            q = _equilibrium.conserved_quantities(p.x, p.c[:, 0], delta, 10)
            ks, var_err = [], []
            for j in range(10):
                sel = np.clip((p.c[:, 0] * 10).astype(int), 0, 9) == j
                if sel.sum() < 50:
                    continue
                B = q["B"][j]
                M = p.x[sel].mean(0) * B
                a, b = _equilibrium.beta_parameters(B, M, sigma)
                for k in (0, 1):
                    s = stats.kstest((1 + p.x[sel, k]) / 2, "beta", args=(a[k], b[k])).statistic
                    ks.append(s * np.sqrt(sel.sum()))
                _, v = _equilibrium.quasi_equilibrium_moments(np.array(B), M, sigma)
                var_err.append(float(np.max(np.abs(p.x[sel].var(0) - v) / v)))
            rows.append({"delta": delta, "eps": eps, "N": n, "T": T,
                         "max_sqrtn_KS": float(np.max(ks)), "max_rel_var_err": max(var_err),
                         "seconds": secs})
            fig_data[(delta, eps)] = (p.x.copy(), p.c[:, 0].copy(), np.array(m_hist))
    # figure: marginals of x_1 for the feature cell around 0.5 against the Beta law
    P = plt()
    fig, axes = P.subplots(1, 3, figsize=(13, 3.8))
    for ax, eps in zip(axes, eps_list, strict=True):
        x, cc, _ = fig_data[(0.2, eps)]
        for lo, col in ((0.3, "C0"), (0.5, "C1"), (0.7, "C2")):
            sel = (cc >= lo) & (cc < lo + 0.1)
            q = _equilibrium.conserved_quantities(x, cc, 0.2, 10)
            j = int(lo * 10)
            M = x[sel].mean(0) * q["B"][j]
            a, b = _equilibrium.beta_parameters(q["B"][j], M, sigma)
            ax.hist(x[sel, 0], bins=40, range=(-1, 1), density=True, alpha=0.35, color=col,
                    label=f"DSMC c in [{lo:.1f},{lo + 0.1:.1f})")
            xs = np.linspace(-0.999, 0.999, 300)
            ax.plot(xs, _equilibrium.quasi_equilibrium_marginal(xs, a[0], b[0]), col)
        ax.set_title(f"Test 1, Delta=0.2, eps={eps}")
        ax.set_xlabel("x_1")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RES / "kinetic_test1_marginals.png", dpi=110)
    fig, axes = P.subplots(1, 2, figsize=(10, 3.6))
    for ax, delta in zip(axes, (0.2, 2.0), strict=True):
        for eps in eps_list:
            mh = fig_data[(delta, eps)][2]
            ts = np.linspace(0, T, len(mh))
            ax.plot(ts, mh[:, 5], label=f"eps={eps}, c~0.55")
            ax.plot(ts, mh[:, 2], "--", label=f"eps={eps}, c~0.25")
        ax.set_title(f"Test 1: M_1(t, c), Delta={delta}")
        ax.set_xlabel("t")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RES / "kinetic_test1_moment.png", dpi=110)
    P.close("all")
    md = ["# Kinetic Test 1: DSMC vs Beta quasi-equilibrium (28)", "",
          f"N = {n} particles, features frozen (H = 0), sigma = {sigma}, T = {T}, dt = eps. "
          "Per feature cell (10 cells) and axis: sqrt(n) x KS distance between the DSMC "
          "positions and the Beta law with the measured B, M (99% critical value 1.63), and "
          "the relative error of the variance (1 - mu^2) sigma^2 / (sigma^2 + B).", "",
          "| Delta | eps | max sqrt(n) KS | max rel. variance error | DSMC s |",
          "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['delta']} | {r['eps']} | {r['max_sqrtn_KS']:.2f} | "
                  f"{r['max_rel_var_err']:.3f} | {r['seconds']:.1f} |")
    md += ["", "Figures: `kinetic_test1_marginals.png`, `kinetic_test1_moment.png`.", ""]
    save("test1", {"rows": rows}, "\n".join(md))


# ------------------------------------------------------------------------------ Test 2


def test2(limit: int | None) -> None:
    """DSMC with space rate 1/delta against the macroscopic model, delta -> 0."""
    n = 40 if limit else 64
    nb = 50
    rng = np.random.default_rng(0)
    col = np.tile(np.arange(n), (n, 1))
    feats = np.clip(0.25 + 0.5 * col / (n - 1) + rng.normal(0, 0.05, (n, n)), 0, 1)[..., None]
    T = 1.0
    rows = []
    curves = {}
    for Delta in (1.0, 0.2):
        st = _macro.macro_setup(feats, n_bins=nb)
        out = _macro.macro_solve(st, delta=[Delta], sigma=[0.3], radius=[0.3],
                                 barriers=[[[0.5]]], transport_rate=1.0, binarise_rate=0.0,
                                 t_final=T)
        cdf_m = np.cumsum(out["rho"][0, 0] / nb)
        curves[(Delta, "macro")] = out["rho"][0, 0]
        for d in (10.0, 1.0, 0.1, 0.02):
            p = _dsmc.make_particles(feats)
            prm = _dsmc.KineticParams(delta=Delta, sigma=0.3, radius=0.3, space_rate=1 / d,
                                      transport_rate=1.0, binarise_rate=0.0, t_final=T,
                                      eps=0.05)
            t0 = time.perf_counter()
            _dsmc.simulate(p, prm, np.array([[0.5]]), np.random.default_rng(1))
            h = np.bincount(np.clip((p.c[:, 0] * nb).astype(int), 0, nb - 1), minlength=nb)
            w1 = float(np.abs(np.cumsum(h) / h.sum() - cdf_m).sum() / nb)
            rows.append({"Delta": Delta, "delta": d, "W1_dsmc_macro": w1,
                         "seconds": time.perf_counter() - t0})
            curves[(Delta, d)] = h / h.sum() * nb
        h0 = np.bincount(np.clip((feats.ravel() * nb).astype(int), 0, nb - 1), minlength=nb)
        curves[(Delta, "init")] = h0 / h0.sum() * nb
    P = plt()
    fig, axes = P.subplots(1, 2, figsize=(11, 3.8))
    cc = (np.arange(nb) + 0.5) / nb
    for ax, Delta in zip(axes, (1.0, 0.2), strict=True):
        ax.plot(cc, curves[(Delta, "init")], "k:", label="t=0")
        for d in (10.0, 1.0, 0.1, 0.02):
            ax.plot(cc, curves[(Delta, d)], alpha=0.7, label=f"DSMC delta={d}")
        ax.plot(cc, curves[(Delta, "macro")], "k", lw=2, label="macroscopic")
        ax.set_title(f"Test 2: rho(T={T}, c), Delta={Delta}")
        ax.set_xlabel("c")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RES / "kinetic_test2_rho.png", dpi=110)
    P.close("all")
    md = ["# Kinetic Test 2: DSMC (space rate 1/delta) vs macroscopic model", "",
          f"{n}x{n} gradient image (c = 0.25..0.75 across columns + N(0, 0.05^2)), sigma = 0.3, "
          f"r = 0.3, lambda_T = 1, no binarisation, T = {T}, eps = 0.05. W1 distance between "
          "the DSMC feature law and the macroscopic rho(T).", "",
          "| Delta | delta | W1(DSMC, macro) | DSMC s |", "|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['Delta']} | {r['delta']} | {r['W1_dsmc_macro']:.4f} | "
                  f"{r['seconds']:.1f} |")
    md += ["", "With Delta >= 1 (P transitive, M conserved) the distance falls as delta -> 0 "
           "until it reaches the Monte Carlo / discretisation floor. With Delta = 0.2 on a "
           "continuous feature law, P is not transitive, M drifts under fast aggregation "
           "(spec §7 caveat) and the macroscopic closure is not approached.", "",
           "Figure: `kinetic_test2_rho.png`.", ""]
    save("test2", {"rows": rows}, "\n".join(md))


# ------------------------------------------------------------------------------ fitting


def fit_theta(img, mask, *, loss, classes=2, channel_axis=None, seed=0, n_agents=12,
              max_iter=12, fit_size=64, **kw):
    arr = img
    model = physeg.fit("kinetic", [arr], [mask], classes=classes, loss=loss,
                       n_agents=n_agents, max_iter=max_iter, fit_size=fit_size, rng=seed, **kw)
    return model


def l2_of(model, img, mask, n_bins=50, channel_axis=None):
    """The paper's loss of a fitted model on one image (macroscopic model, full size 64)."""
    from physeg.families.kinetic import _fit

    feats, labs = _fit.prepare([img], [mask], model.params["classes"], 64)
    obj = _fit.make_objective(feats, labs, classes=model.params["classes"], loss="l2",
                              base={k: model.params[k] for k in
                                    ("transport_rate", "binarise_rate", "t_final")},
                              n_bins=n_bins, rng=np.random.default_rng(0))
    d = feats[0].shape[-1]
    bars = [float(b) for b in str(model.params["barriers"]).split(",")]
    theta = np.array([[model.params["delta"], model.params["sigma"], model.params["radius"]]
                      + bars[: d * (model.params["classes"] - 1)]])
    return float(obj(theta)[0])


def fitcmp(limit: int | None) -> None:
    """Which loss: fit on one noisy square, test on another seed and on a circle."""
    cases = [("gaussian", 3), ("speckle", 3), ("poisson", 2)]
    if limit:
        cases = cases[:1]
    rows = []
    for kind, level in cases:
        tr_img, tr_m = noisy_shape("square", 64, kind, level, rng=100)
        te = [noisy_shape(s, 128, kind, level, rng=200 + i) for i, s in enumerate(
            ("square", "circle"))]
        dflt = [dice(physeg.segment(im, method="kinetic", rng=0), m) for im, m in te]
        rows.append({"noise": kind, "level": level, "loss": "defaults (no fit)",
                     "train_loss": None, "l2_train": None, "test_dice": dflt, "fit_s": 0.0})
        for loss in ("l2", "dice", "mixed"):
            t0 = time.perf_counter()
            model = fit_theta(tr_img, tr_m, loss=loss, n_agents=12 if not limit else 4,
                              max_iter=12 if not limit else 2)
            secs = time.perf_counter() - t0
            td = [dice(model.predict(im, rng=0), m) for im, m in te]
            rows.append({"noise": kind, "level": level, "loss": loss,
                         "train_loss": model.info["loss_value"],
                         "l2_train": l2_of(model, tr_img, tr_m), "test_dice": td,
                         "theta": {k: model.params[k] for k in
                                   ("delta", "sigma", "radius", "barriers")},
                         "fit_s": secs})
            print(rows[-1], flush=True)
    md = ["# Kinetic fitting: which loss (l2 / dice / mixed)", "",
          "Fitted (CBO, 12 agents x 12 iterations, image resized to 64^2) on a noisy square "
          "(seed 100), tested on a new square (seed 200) and a circle (seed 201) at 128^2. "
          "Dice of the particle-model mask. l2 = the paper's histogram loss of the macroscopic "
          "model on the training image.", "",
          "| noise | level | loss | train loss | l2 on train | test Dice square | "
          "test Dice circle | Delta, sigma, r, cbar | fit s |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        th = r.get("theta")
        ths = (f"{th['delta']:.3f}, {th['sigma']:.3f}, {th['radius']:.3f}, {th['barriers']}"
               if th else "defaults")
        tl = "" if r["train_loss"] is None else f"{r['train_loss']:.4f}"
        l2 = "" if r["l2_train"] is None else f"{r['l2_train']:.4f}"
        md.append(f"| {r['noise']} | {r['level']} | {r['loss']} | {tl} | {l2} | "
                  f"{r['test_dice'][0]:.4f} | {r['test_dice'][1]:.4f} | {ths} | "
                  f"{r['fit_s']:.0f} |")
    save("fitcmp", {"rows": rows}, "\n".join(md) + "\n")


# ------------------------------------------------------------------------------ Tables


def table1(limit: int | None) -> None:
    rows = []
    for shape in SHAPES[: (1 if limit else 4)]:
        img, m = noisy_shape(shape, 128, "gaussian", 2, rng=11, background_level=1)
        t0 = time.perf_counter()
        model = fit_theta(img, m, loss="l2", n_agents=12 if not limit else 4,
                          max_iter=12 if not limit else 2)
        secs = time.perf_counter() - t0
        d = dice(model.predict(img, rng=0), m)
        d_def = dice(physeg.segment(img, method="kinetic", rng=0), m)
        p = model.params
        rows.append({"shape": shape, "delta": p["delta"], "sigma": p["sigma"],
                     "radius": p["radius"], "cbar": float(p["barriers"]),
                     "loss": model.info["loss_value"], "dice_fitted": d, "dice_default": d_def,
                     "paper": PAPER_T1[shape], "fit_s": secs})
        print(rows[-1], flush=True)
    md = ["# Kinetic Table 1 (Test 3.1): shapes, theta fitted with the paper's l2 loss", "",
          "128^2, Gaussian noise level 2 (s=0.2) in the shape, level 1 (s=0.1) in the "
          "background. CBO 12 agents x 12 iterations on the macroscopic model (64^2, N_c=50). "
          "Dice of the DSMC mask with the fitted theta, and with the defaults. Paper values in "
          "brackets (its noise intensity and image size were not recoverable).", "",
          "| shape | Delta | sigma | r | cbar | loss | Dice (fitted) | Dice (default) |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pp = r["paper"]
        md.append(f"| {r['shape']} | {r['delta']:.4f} [{pp[0]}] | {r['sigma']:.4f} [{pp[1]}] | "
                  f"{r['radius']:.4f} [{pp[2]}] | {r['cbar']:.4f} [{pp[3]}] | "
                  f"{r['loss']:.4f} [{pp[4]}] | {r['dice_fitted']:.4f} | "
                  f"{r['dice_default']:.4f} |")
    save("table1", {"rows": rows}, "\n".join(md) + "\n")


def table2(limit: int | None) -> None:
    rows = []
    levels = (1, 2, 3, 4) if not limit else (2,)
    for level in levels:
        for kind in KINDS[: (4 if not limit else 2)]:
            img, m = noisy_shape("square", 128, kind, level, rng=20 + level)
            t0 = time.perf_counter()
            model = fit_theta(img, m, loss="l2", n_agents=12 if not limit else 4,
                              max_iter=10 if not limit else 2)
            secs = time.perf_counter() - t0
            rows.append({"noise": kind, "level": level, "loss": model.info["loss_value"],
                         "dice_fitted": dice(model.predict(img, rng=0), m),
                         "dice_default": dice(physeg.segment(img, method="kinetic", rng=0), m),
                         "theta": [model.params[k] for k in ("delta", "sigma", "radius")]
                         + [float(model.params["barriers"])],
                         "paper_loss": PAPER_T2[level][KINDS.index(kind)], "fit_s": secs})
            print(rows[-1], flush=True)
    md = ["# Kinetic Table 2 (Test 3.2): square, four noises x four intensities", "",
          "128^2 centred square, the same noise level in shape and background (levels of spec "
          "§10). theta fitted with the paper's l2 loss (CBO 12 agents x 10 iterations, "
          "macroscopic model on 64^2). Cell: loss [paper] / Dice fitted / Dice default.", "",
          "| level | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    for level in levels:
        cells = []
        for kind in KINDS:
            r = [x for x in rows if x["noise"] == kind and x["level"] == level]
            if not r:
                cells.append("")
                continue
            r = r[0]
            cells.append(f"{r['loss']:.4f} [{r['paper_loss']}] / {r['dice_fitted']:.3f} / "
                         f"{r['dice_default']:.3f}")
        md.append(f"| {level} | " + " | ".join(cells) + " |")
    save("table2", {"rows": rows}, "\n".join(md) + "\n")


def table3(limit: int | None) -> None:
    img, m = noisy_shape("square", 128, "gaussian", 2, rng=31, channels=3,
                         shape_value=(0.8, 0.7, 0.9), background_value=(0.2, 0.1, 0.3))
    t0 = time.perf_counter()
    model = fit_theta(img, m, loss="l2", n_agents=12 if not limit else 4,
                      max_iter=12 if not limit else 2)
    secs = time.perf_counter() - t0
    runs = 10 if not limit else 2
    d_fit = dice(model.predict(img, channel_axis=-1, runs=runs, rng=0), m)
    d_one = dice(model.predict(img, channel_axis=-1, runs=1, rng=0), m)
    d_def = dice(physeg.segment(img, method="kinetic", channel_axis=-1, runs=runs, rng=0), m)
    bars = [float(b) for b in model.params["barriers"].split(",")]
    row = {"delta": model.params["delta"], "sigma": model.params["sigma"],
           "radius": model.params["radius"], "cbar": bars, "loss": model.info["loss_value"],
           "dice_fitted_avg_runs": d_fit, "dice_fitted_1run": d_one, "dice_default": d_def,
           "runs": runs, "paper": PAPER_T3, "fit_s": secs}
    # figure: marginals of the final features (DSMC, averaged runs) per channel
    feats = _dsmc.image_features(img, -1)
    prm = physeg.families.kinetic._params(
        classes=2, delta=row["delta"], sigma=row["sigma"], radius=row["radius"],
        barriers=model.params["barriers"], eps=0.05, dt=0.05, t_final=4.0, space_rate=0.05,
        transport_rate=20.0, binarise_rate=0.5, feature_update="mean", d=3)
    _, cfin = _dsmc.run_particle_model(feats, prm, np.random.default_rng(0), runs=1)
    P = plt()
    fig, axes = P.subplots(1, 3, figsize=(12, 3.4))
    for k, ax in enumerate(axes):
        ax.hist(feats[..., k].ravel(), bins=50, range=(0, 1), alpha=0.5, label="t=0")
        ax.hist(cfin[..., k].ravel(), bins=50, range=(0, 1), alpha=0.5, label="t=T (DSMC)")
        ax.set_title(f"Test 4: channel {'RGB'[k]} marginal")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(RES / "kinetic_table3_marginals.png", dpi=110)
    P.close("all")
    md = ["# Kinetic Table 3 (Test 4): RGB square, Gaussian noise on all channels", "",
          "128^2, shape (0.8, 0.7, 0.9), background (0.2, 0.1, 0.3), Gaussian s = 0.2 per "
          "channel; l2 fit of (Delta, sigma, r, cbar_R, cbar_G, cbar_B) on the per-channel "
          "marginal macroscopic model; mask = mean of the final features over "
          f"{runs} DSMC runs, thresholded at 1/2. Paper values in brackets.", "",
          "| Delta | sigma | r | cbar_R | cbar_G | cbar_B | loss | Dice (avg runs) | "
          "Dice (1 run) | Dice (default) |", "|---|---|---|---|---|---|---|---|---|---|",
          f"| {row['delta']:.4f} [{PAPER_T3[0]}] | {row['sigma']:.4f} [{PAPER_T3[1]}] | "
          f"{row['radius']:.4f} [{PAPER_T3[2]}] | {bars[0]:.4f} [{PAPER_T3[3]}] | "
          f"{bars[1]:.4f} [{PAPER_T3[4]}] | {bars[2]:.4f} [{PAPER_T3[5]}] | "
          f"{row['loss']:.2e} [lost] | {d_fit:.4f} | {d_one:.4f} | {d_def:.4f} |", "",
          "Figure: `kinetic_table3_marginals.png`.", ""]
    save("table3", row, "\n".join(md))


# ------------------------------------------------------------------------------ grid


def grid(limit: int | None) -> None:
    sizes = (128, 256) if not limit else (128,)
    shapes = SHAPES if not limit else SHAPES[:2]
    kinds = ("gaussian", "uniform", "speckle", "poisson")
    rows = []
    models = {}
    for kind in kinds:
        for level in (1, 2):
            tr_img, tr_m = noisy_shape("square", 64, kind, level, rng=900 + level)
            t0 = time.perf_counter()
            models[(kind, level)] = fit_theta(tr_img, tr_m, loss="dice",
                                              n_agents=10 if not limit else 3,
                                              max_iter=10 if not limit else 2, seed=level)
            print("fitted", kind, level, models[(kind, level)].params,
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
    for size in sizes:
        for shape in shapes:
            for kind in kinds:
                for level in (1, 2):
                    img, m = noisy_shape(shape, size, kind, level, rng=1000 + level)
                    t0 = time.perf_counter()
                    d0 = dice(physeg.segment(img, method="kinetic", rng=0), m)
                    secs = time.perf_counter() - t0
                    d1 = dice(models[(kind, level)].predict(img, rng=0), m)
                    d_otsu = dice(physeg.segment(img, method="otsu"), m)
                    rows.append({"size": size, "shape": shape, "noise": kind, "level": level,
                                 "dice_default": d0, "dice_fitted": d1, "dice_otsu": d_otsu,
                                 "seconds_default": secs})
                    print(rows[-1], flush=True)
    md = ["# Kinetic acceptance grid: four shapes x four noises x levels 1, 2", "",
          "Shape 1 on background 0 (speckle/Poisson: 0.8 on 0.2, whose noise vanishes at 0), "
          "noise of spec §10 in both regions. Dice of the particle-model mask with the default "
          "parameters, and after a Dice fit (CBO 10 agents x 10 iterations) on a *different* "
          "image: a noisy square of the same noise kind and level, another seed, 64^2. "
          "Otsu for reference. Cell: default / fitted / Otsu.", ""]
    for size in sizes:
        md += [f"## {size}x{size}", "", "| shape | level | " + " | ".join(kinds) + " |",
               "|---|---|" + "---|" * len(kinds)]
        for shape in shapes:
            for level in (1, 2):
                cells = []
                for kind in kinds:
                    r = [x for x in rows if (x["size"], x["shape"], x["noise"], x["level"])
                         == (size, shape, kind, level)][0]
                    cells.append(f"{r['dice_default']:.4f} / {r['dice_fitted']:.4f} / "
                                 f"{r['dice_otsu']:.3f}")
                md.append(f"| {shape} | {level} | " + " | ".join(cells) + " |")
        md.append("")
    dd = [r["dice_default"] for r in rows]
    df = [r["dice_fitted"] for r in rows]
    mean_t = {s: np.mean([r["seconds_default"] for r in rows if r["size"] == s]) for s in sizes}
    md += [f"Minimum Dice: default {min(dd):.4f}, fitted {min(df):.4f} over {len(rows)} cells "
           f"(required >= 0.95). Mean DSMC time per image: "
           + ", ".join(f"{s}^2 {mean_t[s]:.2f} s" for s in sizes) + ".", ""]
    save("grid", {"rows": rows, "fitted": {f"{k[0]}-{k[1]}": v.params for k, v in
                                           models.items()}}, "\n".join(md))


# ------------------------------------------------------------------------------ Fig. 8


def landscape(limit: int | None) -> None:
    from physeg.families.kinetic import _fit

    img, m = noisy_shape("square", 64, "speckle", 3, rng=41)
    feats, labs = _fit.prepare([img], [m], 2, 64)
    g = 7 if limit else 15
    rs = np.linspace(0.02, 0.3, g)
    cs = np.linspace(0.3, 0.7, g)
    R, C = np.meshgrid(rs, cs)
    theta = np.stack([np.full(R.size, 0.3), np.full(R.size, 0.1), R.ravel(), C.ravel()], 1)
    base = {"transport_rate": 20.0, "binarise_rate": 0.5, "t_final": 4.0, "eps": 0.05,
            "dt": 0.05, "space_rate": 0.05, "feature_update": "mean"}
    t0 = time.perf_counter()
    l2 = _fit.make_objective(feats, labs, classes=2, loss="l2", base=base, n_bins=50,
                             rng=np.random.default_rng(0))(theta).reshape(R.shape)
    t_l2 = time.perf_counter() - t0
    t0 = time.perf_counter()
    dl = _fit.make_objective(feats, labs, classes=2, loss="dice", base=base, n_bins=50,
                             rng=np.random.default_rng(0))(theta).reshape(R.shape)
    t_dice = time.perf_counter() - t0
    P = plt()
    fig, axes = P.subplots(1, 2, figsize=(11, 4.2))
    for ax, Z, title in ((axes[0], l2, "l2 loss (macroscopic, paper)"),
                         (axes[1], dl, "1 - Dice (particle model)")):
        im = ax.contourf(R, C, Z, levels=20, cmap="viridis")
        fig.colorbar(im, ax=ax)
        ax.set_xlabel("r")
        ax.set_ylabel("cbar")
        ax.set_title(f"Fig. 8: {title}, speckle level 3")
    fig.tight_layout()
    fig.savefig(RES / "kinetic_fig8_landscape.png", dpi=110)
    P.close("all")
    i = np.unravel_index(np.argmin(l2), l2.shape)
    j = np.unravel_index(np.argmin(dl), dl.shape)
    md = ["# Kinetic Fig. 8: loss landscape over (r, cbar)", "",
          f"Speckle level 3, 64^2 square, Delta = 0.3, sigma = 0.1, {g}x{g} grid. "
          f"The l2 landscape ({g * g} agents in one vectorised macroscopic call: {t_l2:.1f} s) "
          f"has its minimum {l2[i]:.4f} at r = {R[i]:.3f}, cbar = {C[i]:.3f}; 1 - Dice "
          f"({g * g} DSMC runs: {t_dice:.1f} s) has its minimum {dl[j]:.4f} at r = {R[j]:.3f}, "
          f"cbar = {C[j]:.3f}. 1 - Dice at the l2 minimum: {dl[i]:.4f}.", "",
          "Figure: `kinetic_fig8_landscape.png`.", ""]
    save("landscape", {"r": rs.tolist(), "cbar": cs.tolist(), "l2": l2.tolist(),
                  "one_minus_dice": dl.tolist(), "seconds_l2": t_l2, "seconds_dice": t_dice},
         "\n".join(md))


# ------------------------------------------------------------------------------ K = 3


def _wbc_pairs(root: Path):
    import imageio.v3 as iio

    out = []
    for p in sorted((root / "images").glob("*.png")):
        img = iio.imread(p)[..., :3]
        lab = iio.imread(root / "masks" / p.name)
        out.append((p.stem, img, lab))
    return out


def _class_scores(pred, gt, K):
    d = [dice(pred == k, gt == k) for k in range(K)]
    iou = [float(metrics.iou(pred == k, gt == k, average="binary")) for k in range(K)]
    return d, float(np.mean(iou))


def multiclass(limit: int | None, wbc: Path | None) -> None:
    from physeg.data.synthetic import three_level_image

    out = {"three_level": [], "wbc": {}}
    md = ["# Kinetic K = 3 (beyond the paper)", "",
          "## Three-level synthetic image (128^2, labels 0/1/2 at grey 0/0.5/1)", "",
          "| noise s | method | Dice 0 | Dice 1 | Dice 2 | mIoU |", "|---|---|---|---|---|---|"]
    img, lab = three_level_image(128)
    for s in (0.1, 0.15, 0.2):
        noisy = np.clip(img + np.random.default_rng(int(s * 100)).normal(0, s, img.shape), 0, 1)
        tr = np.clip(img + np.random.default_rng(999).normal(0, s, img.shape), 0, 1)
        model = physeg.fit("kinetic", [tr], [lab], classes=3, loss="dice",
                           n_agents=8 if not limit else 3, max_iter=8 if not limit else 1,
                           fit_size=64, rng=0)
        for name, pred in (
            ("kinetic default", physeg.segment(noisy, method="kinetic", classes=3, rng=0)),
            ("kinetic fitted", model.predict(noisy, rng=0)),
            ("multi-Otsu", physeg.segment(noisy, method="otsu", classes=3)),
        ):
            d, miou = _class_scores(pred, lab, 3)
            out["three_level"].append({"s": s, "method": name, "dice": d, "miou": miou})
            md.append(f"| {s} | {name} | {d[0]:.4f} | {d[1]:.4f} | {d[2]:.4f} | {miou:.4f} |")
    md.append("")
    if wbc is not None and (wbc / "images").is_dir():
        pairs = _wbc_pairs(wbc)
        if limit:
            pairs = pairs[: max(6, limit)]
        # class-to-label: stained smears, nucleus darkest, background brightest (checked below)
        means = np.array([[np.mean([im[lb == k].mean() for _, im, lb in pairs if np.any(lb == k)])
                           for k in range(3)]])
        mapping = {0: 2, 1: 1, 2: 0}  # kinetic class (0 = darkest) -> WBC label
        to_label = np.array([mapping[k] for k in range(3)], dtype=np.uint8)
        train, test = pairs[:5], pairs[5:]
        t0 = time.perf_counter()
        model = physeg.fit("kinetic", [im for _, im, _ in train],
                           [to_label[lb] for _, _, lb in train],  # label -> kinetic class
                           classes=3, loss="dice", n_agents=8 if not limit else 3,
                           max_iter=8 if not limit else 1, fit_size=64, rng=0)
        fit_s = time.perf_counter() - t0
        res = {"default_rgb": [], "default_grey": [], "fitted_rgb": [], "otsu_grey": []}
        for _, im, lb in test:
            grey = im.mean(-1)
            preds = {
                "default_rgb": physeg.segment(im, method="kinetic", classes=3,
                                              channel_axis=-1, rng=0),
                "default_grey": physeg.segment(grey, method="kinetic", classes=3, rng=0),
                "fitted_rgb": model.predict(im, channel_axis=-1, rng=0),
                "otsu_grey": physeg.segment(grey, method="otsu", classes=3),
            }
            for k, p in preds.items():
                d, miou = _class_scores(to_label[p], lb, 3)
                res[k].append(d + [miou])
        md += ["## White blood cells (dev set, RGB, labels 0 bg / 1 cytoplasm / 2 nucleus)", "",
               f"{len(test)} test images ({len(train)} others used for the fit). Kinetic "
               "classes are ordered by intensity (0 darkest); mapped to labels by 0 -> nucleus "
               "(2), 1 -> cytoplasm (1), 2 -> background (0), because in these stained smears the "
               "mean RGB intensity is ordered nucleus < cytoplasm < background (dev-set means "
               f"of the channel means: bg {means[0, 0]:.0f}, cytoplasm {means[0, 1]:.0f}, "
               f"nucleus {means[0, 2]:.0f}). The same fixed map for every image, no "
               "per-image matching.", "",
               "| method | Dice bg | Dice cytoplasm | Dice nucleus | mIoU |",
               "|---|---|---|---|---|"]
        for k, v in res.items():
            a = np.mean(v, 0)
            md.append(f"| {k} | {a[0]:.4f} | {a[1]:.4f} | {a[2]:.4f} | {a[3]:.4f} |")
            out["wbc"][k] = a.tolist()
        out["wbc"]["fit_params"] = model.params
        out["wbc"]["fit_s"] = fit_s
        md += ["", f"Fitted theta (5 images, Dice loss, {fit_s:.0f} s): "
               f"Delta={model.params['delta']:.3f}, sigma={model.params['sigma']:.3f}, "
               f"r={model.params['radius']:.3f}, barriers (R,G,B x 2)={model.params['barriers']}.",
               ""]
    else:
        md += ["White-blood-cell data not found (pass --wbc DIR); skipped.", ""]
    save("multiclass", out, "\n".join(md))


def evolution(limit: int | None) -> None:
    """Figs. 6-7: rho(t, c) binarising, macroscopic model and DSMC, Gaussian levels 1-4."""
    n, nb = (48 if limit else 64), 50
    times = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    P = plt()
    fig, axes = P.subplots(1, 4, figsize=(17, 3.8), sharey=True)
    rows = []
    cc = (np.arange(nb) + 0.5) / nb
    for ax, level in zip(axes, (1, 2, 3, 4), strict=True):
        img, m = noisy_shape("square", n, "gaussian", level, rng=50 + level)
        feats = _dsmc.image_features(img, None)
        st = _macro.macro_setup(feats, n_bins=nb)
        out = _macro.macro_solve(st, delta=[0.3], sigma=[0.1], radius=[0.06],
                                 barriers=[[[0.5]]], t_final=times[-1], record=times)
        gt = _macro.gt_distribution([1 - m.mean(), m.mean()], nb)
        snaps = {}

        def grab(t, p, snaps=snaps):
            for tt in times:
                if abs(t - tt) < 1e-9:
                    snaps[tt] = np.bincount(np.clip((p.c[:, 0] * nb).astype(int), 0, nb - 1),
                                            minlength=nb) / p.c.shape[0] * nb

        p = _dsmc.make_particles(feats)
        _dsmc.simulate(p, _dsmc.KineticParams(t_final=times[-1]), np.array([[0.5]]),
                       np.random.default_rng(0), callback=grab)
        for i, tt in enumerate(times):
            line, = ax.plot(cc, out["history"][i, 0, 0], label=f"t={tt} macro")
            if tt in snaps:
                ax.plot(cc, snaps[tt], "--", color=line.get_color(), alpha=0.7)
            rows.append({"level": level, "t": tt,
                         "l2_macro": float(_macro.histogram_loss(out["history"][i, 0, 0], gt,
                                                                 nb)),
                         "l2_dsmc": float(_macro.histogram_loss(snaps.get(tt, np.nan), gt,
                                                                nb))})
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"Gaussian level {level}: rho(t, c)")
        ax.set_xlabel("c")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RES / "kinetic_evolution.png", dpi=110)
    P.close("all")
    md = ["# Kinetic feature-density evolution (Figs. 6-7)", "",
          f"{n}^2 square, Gaussian noise levels 1-4, default theta (Delta 0.3, sigma 0.1, r 0.06, "
          "cbar 0.5, lambda_T 20, lambda_B 0.5). Solid: macroscopic rho(t); dashed: DSMC "
          "feature histogram at the same times. Paper's l2 loss against the GT distribution:", "",
          "| level | t | l2 macro | l2 DSMC |", "|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['level']} | {r['t']} | {r['l2_macro']:.4f} | {r['l2_dsmc']:.4f} |")
    md += ["", "Figure: `kinetic_evolution.png`.", ""]
    save("evolution", {"rows": rows}, "\n".join(md))


SECTIONS = ("test1", "test2", "fitcmp", "grid", "table1", "table2", "table3", "landscape",
            "multiclass", "evolution")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="shrink every section (quick run)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    import _common

    default_wbc = _common.default_data("wbc")
    ap.add_argument("--wbc", type=Path, default=default_wbc, help="white-blood-cell folder")
    args = ap.parse_args()
    for name in args.only.split(","):
        name = name.strip()
        if name not in SECTIONS:
            raise SystemExit(f"unknown section {name!r}; choose from {SECTIONS}")
        t0 = time.perf_counter()
        if name == "multiclass":
            multiclass(args.limit, args.wbc)
        else:
            globals()[name](args.limit)
        print(f"[{name}] {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
