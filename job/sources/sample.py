"""A seeded synthetic market with the shape of the real one: the offline default (SYNTHETIC DATA).

The universe's assets get daily adjusted closes from 2003-09 to 2025-12 (business days), 130 macro series
get monthly levels, and the risk-free rate is a smooth positive series. Nothing here is real.

Planted relation (what a model can learn, documented so tests can rely on it): three latent macro
factors f_k follow AR(1) processes (phi = 0.6, unit variance). Non-market series (publication lag 1)
are noisy linear readings of the factors, so at the decision date of month m they reveal f(m-1). The
return of asset j over month m+1 is

    r_j(m+1) = 0.006 + beta_j * market(m+1) + sum_k gamma_jk * f_k(m-1) + e_j(m+1)

with market ~ N(0, 0.04), e ~ N(0, 0.02) and gamma_jk ~ N(0, 0.02): about half of the cross-sectional
variance of next month's returns is predictable from data that is known at the decision date.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from job.config import Settings, Universe
from job.sources.base import SourceData

N_SERIES = 130
N_FACTORS = 3
FIRST_MONTH = "2003-09"
LAST_MONTH = "2025-12"


def sample_series_meta() -> pd.DataFrame:
    """Names, tcodes and market flags of the synthetic series (20 market series with lag 0)."""
    rows = []
    for i in range(N_SERIES):
        tcode = 1 if i % 4 in (0, 1) else (5 if i % 4 == 2 else 2)
        market = i >= N_SERIES - 20
        rows.append({"series": f"SYN{i:03d}", "tcode": tcode, "market": market,
                     "grp": "synthetic market" if market else "synthetic macro",
                     "description": f"synthetic series {i} (tcode {tcode})"})
    return pd.DataFrame(rows)


def fetch_sample(settings: Settings, universe: Universe) -> SourceData:
    """Generate the synthetic market for ``universe`` with ``settings.data.sample_seed``."""
    rng = np.random.default_rng(settings.data.sample_seed)
    months = pd.period_range(FIRST_MONTH, LAST_MONTH, freq="M")
    n_months, n_assets = len(months), len(universe.tickers)

    factors = np.zeros((n_months, N_FACTORS))
    for t in range(1, n_months):
        factors[t] = 0.6 * factors[t - 1] + rng.normal(0.0, np.sqrt(1 - 0.36), N_FACTORS)

    meta = sample_series_meta()
    loadings = rng.normal(0.0, 1.0, (N_SERIES, N_FACTORS))
    noise = rng.normal(0.0, 0.5, (n_months, N_SERIES))
    signal = factors @ loadings.T + noise           # what a transformed series shows each period
    levels = np.empty_like(signal)
    for i, tcode in enumerate(meta["tcode"]):
        if tcode == 1:
            levels[:, i] = signal[:, i]
        elif tcode == 2:
            levels[:, i] = 50.0 + np.cumsum(signal[:, i])
        else:  # tcode 5: a positive level whose log change is the signal
            levels[:, i] = 100.0 * np.exp(np.cumsum(0.01 * signal[:, i]))
    macro = pd.DataFrame(levels, columns=meta["series"])
    macro["period"] = months.start_time
    macro = macro.melt(id_vars="period", var_name="series")
    macro["vintage"] = "sample"
    macro["vintage_release"] = pd.NaT
    macro["realtime_start"] = pd.NaT
    macro["origin"] = f"sample(seed={settings.data.sample_seed})"

    beta = rng.uniform(0.6, 1.4, n_assets)
    gamma = rng.normal(0.0, 0.02, (n_assets, N_FACTORS))
    market = rng.normal(0.0, 0.04, n_months)
    idio = rng.normal(0.0, 0.02, (n_months, n_assets))
    monthly = np.zeros((n_months, n_assets))
    for t in range(2, n_months):
        monthly[t] = 0.006 + beta * market[t] + gamma @ factors[t - 2] + idio[t]
    monthly = np.clip(monthly, -0.5, 0.5)

    days = pd.bdate_range(months[0].start_time, months[-1].end_time.normalize())
    day_month = days.to_period("M")
    frames = []
    for j, ticker in enumerate(universe.tickers):
        log_daily = np.zeros(len(days))
        for t, month in enumerate(months):
            mask = day_month == month
            n = int(mask.sum())
            wiggle = rng.normal(0.0, 0.006, n)
            log_daily[mask] = np.log1p(monthly[t, j]) / n + wiggle - wiggle.mean()
        close = 100.0 * np.exp(np.cumsum(log_daily))
        frames.append(pd.DataFrame({"asset": ticker, "date": days, "close": close,
                                    "origin": f"sample(seed={settings.data.sample_seed})"}))
    prices = pd.concat(frames, ignore_index=True)

    rf = 0.0015 + 0.001 * np.sin(np.arange(n_months) / 24.0)
    risk_free = pd.DataFrame({"month": months.start_time, "rf": rf,
                              "origin": f"sample(seed={settings.data.sample_seed})"})
    details = {"synthetic": True, "seed": settings.data.sample_seed, "months": [FIRST_MONTH, LAST_MONTH],
               "series": N_SERIES, "planted_signal": "r_j(m+1) ~ gamma_j . f(m-1); see job/sources/sample.py"}
    return SourceData(source="sample", prices=prices, macro=macro, risk_free=risk_free, synthetic=True,
                      details=details | {"series_meta": meta.to_dict(orient="records")})
