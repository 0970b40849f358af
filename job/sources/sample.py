"""A seeded synthetic market with the shape of the real one: the offline default (SYNTHETIC DATA).

The universe's assets get daily adjusted closes from 2003-09 to 2025-12 (business days), 130 macro series
get monthly levels, and the risk-free rate is a smooth positive series. Nothing here is real.

Planted relation (what a model can learn, documented so tests can rely on it): three latent macro
factors f_k follow AR(1) processes (phi = 0.6, unit variance). Non-market series (publication lag 1)
are noisy linear readings of the factors, so at the decision date of month m they reveal f(m-1). The
return of asset j over month m+1 is

    r_j(m+1) = alpha_j + beta_j * market(m+1) + sum_k gamma_jk * f_k(m-1) + e_j(m+1)

calibrated to real monthly sector-fund returns (see :func:`sample_returns`): a market with calm and
stress regimes (occasional 2008- and 2020-like drawdowns), sector betas 0.6..1.35, annual drifts of
about 5-12 % and volatilities of 15-27 %, correlations with the market of 0.55-0.92, and a modest
planted signal gamma_jk ~ N(0, 0.25 %): a few percent of the cross-sectional variance of next month's
returns is predictable, so a model's rank IC is a few hundredths, as on real data.
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


MARKET_CALM = (0.012, 0.035)      # monthly mean and volatility of the market in calm months
MARKET_STRESS = (-0.025, 0.075)   # ... and in stress months (2008-, 2020-like drawdowns)
P_ENTER_STRESS, P_LEAVE_STRESS = 0.02, 0.12
MARKET_DRIFT = 0.007              # realised mean monthly market return (about 8.7 % a year)
GAMMA_SD = 0.0025                 # the planted signal: a modest rank IC of a few hundredths for a model


def sample_returns(rng: np.random.Generator, factors: np.ndarray, universe: Universe) -> tuple[np.ndarray, np.ndarray]:
    """Monthly returns (months x assets) and the stress flag per month, calibrated to real sector funds.

    The market follows a two-state regime (calm / stress, a Markov chain that enters stress about once in
    four years and stays about eight months): about 8.5 % a year and 15-17 % volatility overall, with
    drawdowns of 30-50 % in long stress spells. The benchmark is the market; each sector has a beta in
    0.6..1.35 and idiosyncratic volatility of 2.5-4.5 % a month, so annual volatility is 15-27 % and the
    correlation with the market 0.55-0.92. The planted signal (see the module docstring) has a
    cross-sectional spread of about 0.4 % a month against about 3.6 % of noise.
    """
    n_months, n_assets = factors.shape[0], len(universe.tickers)
    stress = np.zeros(n_months, dtype=bool)
    for t in range(1, n_months):
        stress[t] = rng.random() < (1 - P_LEAVE_STRESS if stress[t - 1] else P_ENTER_STRESS)
    mean = np.where(stress, MARKET_STRESS[0], MARKET_CALM[0])
    vol = np.where(stress, MARKET_STRESS[1], MARKET_CALM[1])
    market = mean + vol * rng.standard_normal(n_months)
    market += MARKET_DRIFT - market[2:].mean()  # the realised drift, whatever the regime draws
    bench = np.array([t == universe.benchmark for t in universe.tickers])
    beta = np.where(bench, 1.0, rng.uniform(0.6, 1.35, n_assets))
    idio_sd = np.where(bench, 0.002, rng.uniform(0.025, 0.045, n_assets))
    alpha = np.where(bench, 0.0, rng.normal(0.0, 0.001, n_assets))
    gamma = np.where(bench[:, None], 0.0, rng.normal(0.0, GAMMA_SD, (n_assets, N_FACTORS)))
    idio = rng.standard_normal((n_months, n_assets)) * idio_sd * np.where(stress, 1.5, 1.0)[:, None]
    monthly = np.zeros((n_months, n_assets))
    for t in range(2, n_months):
        monthly[t] = alpha + beta * market[t] + gamma @ factors[t - 2] + idio[t]
    return np.clip(monthly, -0.45, 0.45), stress


def fetch_sample(settings: Settings, universe: Universe) -> SourceData:
    """Generate the synthetic market for ``universe`` with ``settings.data.sample_seed``."""
    rng = np.random.default_rng(settings.data.sample_seed)
    months = pd.period_range(FIRST_MONTH, LAST_MONTH, freq="M")
    n_months = len(months)

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

    monthly, stress = sample_returns(rng, factors, universe)
    days = pd.bdate_range(months[0].start_time, months[-1].end_time.normalize())
    day_month = days.to_period("M")
    frames = []
    for j, ticker in enumerate(universe.tickers):
        log_daily = np.zeros(len(days))
        for t, month in enumerate(months):
            mask = day_month == month
            n = int(mask.sum())
            wiggle = rng.normal(0.0, 0.016 if stress[t] else 0.007, n)
            log_daily[mask] = np.log1p(monthly[t, j]) / n + wiggle - wiggle.mean()
        close = 100.0 * np.exp(np.cumsum(log_daily))
        frames.append(pd.DataFrame({"asset": ticker, "date": days, "close": close,
                                    "origin": f"sample(seed={settings.data.sample_seed})"}))
    prices = pd.concat(frames, ignore_index=True)

    annual = np.empty(n_months)
    annual[0] = 0.01
    for t in range(1, n_months):  # a slow, positive T-bill-like path between 0 % and 5.5 % a year
        annual[t] = np.clip(0.02 + 0.985 * (annual[t - 1] - 0.02) + rng.normal(0.0, 0.0025), 0.0, 0.055)
    rf = annual / 12.0
    risk_free = pd.DataFrame({"month": months.start_time, "rf": rf,
                              "origin": f"sample(seed={settings.data.sample_seed})"})
    details = {"synthetic": True, "seed": settings.data.sample_seed, "months": [FIRST_MONTH, LAST_MONTH],
               "series": N_SERIES, "planted_signal": "r_j(m+1) ~ gamma_j . f(m-1), gamma ~ N(0, 0.25 %); see sample.py",
               "stress_months": int(stress.sum())}
    return SourceData(source="sample", prices=prices, macro=macro, risk_free=risk_free, synthetic=True,
                      details=details | {"series_meta": meta.to_dict(orient="records")})
