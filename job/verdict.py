"""A verdict first: three or four plain sentences computed from the metrics document, never hand-written.

:func:`verdict` reads the sections :func:`job.metrics.summarise` and the evaluation stage write and says:

1. which model next month's weights come from, where it ranks on the scoreboard's MAE and, with an
   execution lag, its net Sharpe traded after the run against trading at the month-end close;
2. whether any model beat both the benchmark (SPY) and equal weight on a risk-adjusted basis over the
   full out-of-sample span, net of costs: the Sharpe-ratio difference ``SR_model - SR_ref`` > 0 against
   both, with the Ledoit-Wolf (HAC) two-sided p-value (``relative`` section); otherwise the best model's
   figures;
3. whether the forecasts beat the baselines on the scoreboard (same rows for everyone): models with a
   lower MAE than the best baseline, with the Diebold-Mariano p-value (Newey-West) of the closest;
4. whether the rank IC is significant: the best model's mean rank IC with its Newey-West t, lag and
   p-value (5 % two-sided), and how many models are significant.

Every number comes from the document; change the figures and the sentences change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ALPHA = 0.05
REFERENCE_NAMES = {"benchmark": "SPY", "equal_weight": "equal weight"}


def chosen_model(default_model: str, models: Sequence[str]) -> str:
    """The model the report leads with: ``report.default_model`` when it ran, else the last model."""
    return default_model if default_model in models else list(models)[-1]


def _p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.01" if p < 0.01 else f"p = {p:.2f}"


def _signed(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}".replace("-", "\u2212")


def _num(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}".replace("-", "\u2212")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def weights_sentence(doc: Mapping[str, Any], chosen: str) -> str:
    """Sentence 1: where the weights come from, its scoreboard rank and the execution-lag effect."""
    text = f"Next month's weights come from the {chosen} model"
    board = _get(doc, "scoreboard", "models") or {}
    own = _get(board, chosen, "common") or {}
    if own.get("mae_rank") is not None:
        text += f", {_ordinal(int(own['mae_rank']))} of {len(board)} on the scoreboard's MAE"
        if own.get("rank_ic_mean") is not None:
            text += f" (rank IC {_signed(own['rank_ic_mean'], 3)})"
    execution = _get(doc, "execution") or {}
    exe = _get(execution, "models", chosen, "executed_net", "sharpe")
    end = _get(execution, "models", chosen, "month_end_net", "sharpe")
    day = execution.get("execution_lag_days") or 0
    if day and exe is not None and end is not None:
        text += (f"; traded on the first trading day from day {day} of the month, as the monthly run allows, its "
                 f"net Sharpe is {_num(exe)} against {_num(end)} if it could trade at the month-end close")
    return text + "."


def risk_adjusted_sentence(doc: Mapping[str, Any]) -> str | None:
    """Sentence 2: did any model beat SPY and equal weight on the full span, net of costs (Sharpe, p)."""
    relative = _get(doc, "relative", "models") or {}
    models = [m for m in (doc.get("models") or {}) if m in relative]
    rows = []
    for m in models:
        rel = relative[m].get("full_net") or {}
        sharpe = _get(doc, "models", m, "full_net", "sharpe")
        diffs = {ref: (rel.get(f"sharpe_difference_vs_{ref}"), rel.get(f"sharpe_difference_p_vs_{ref}"))
                 for ref in REFERENCE_NAMES}
        if sharpe is None or any(d is None for d, _ in diffs.values()):
            continue
        rows.append((m, sharpe, diffs))
    if not rows:
        return None
    window = _get(doc, "windows", "full") or {}
    span = f" ({window['start']} to {window['end']}, net of costs)" if window.get("start") else " (net of costs)"
    spy = _get(doc, "benchmark", "full", "sharpe")
    ew = _get(doc, "equal_weight", "full", "sharpe")
    refs = (f"SPY's {_num(spy)} and equal weight's {_num(ew)}" if spy is not None and ew is not None
            else "the references'")
    beaters = [r for r in rows if all(d > 0 for d, _ in r[2].values())]
    if beaters:
        m, sharpe, diffs = max(beaters, key=lambda r: r[1])
        (d_b, p_b), (d_e, p_e) = diffs["benchmark"], diffs["equal_weight"]
        significant = all(p is not None and p < ALPHA for p in (p_b, p_e))
        who = (f"{m} beat both SPY and equal weight on a risk-adjusted basis" if len(beaters) == 1 else
               f"{len(beaters)} of {len(rows)} models beat both SPY and equal weight on a risk-adjusted basis; "
               f"the best is {m}")
        return (f"Over the full span{span} {who}: Sharpe {_num(sharpe)} against {refs} (difference "
                f"{_signed(d_b)}, {_p(p_b)} against SPY; {_signed(d_e)}, {_p(p_e)} against equal weight, Ledoit-Wolf), "
                f"{'significant' if significant else 'not significant'} at 5 %.")
    m, sharpe, diffs = max(rows, key=lambda r: r[1])
    (d_b, p_b), (d_e, p_e) = diffs["benchmark"], diffs["equal_weight"]
    return (f"No model beat both SPY and equal weight on a risk-adjusted basis over the full span{span}: the "
            f"best, {m}, had a Sharpe of {_num(sharpe)} against {refs} (difference {_signed(d_b)}, {_p(p_b)} "
            f"against SPY; {_signed(d_e)}, {_p(p_e)} against equal weight, Ledoit-Wolf).")


def baselines_sentence(doc: Mapping[str, Any]) -> str | None:
    """Sentence 3: did the forecasts beat the baselines on the scoreboard (MAE on the same rows)."""
    board = _get(doc, "scoreboard", "models") or {}
    entries = {m: v.get("common") or {} for m, v in board.items()}
    models = {m: e for m, e in entries.items() if e.get("kind") == "model" and e.get("mae") is not None}
    bases = {m: e for m, e in entries.items() if e.get("kind") == "baseline" and e.get("mae") is not None}
    if not models or not bases:
        return None
    window = _get(doc, "scoreboard", "window") or {}
    where = f"On the scoreboard ({window.get('months')} common months, every model on the same rows)"
    base, base_e = min(bases.items(), key=lambda kv: kv[1]["mae"])
    col = base.replace("-", "_")
    better = sorted((m for m, e in models.items() if e["mae"] < base_e["mae"]), key=lambda m: models[m]["mae"])
    closest = min(models, key=lambda m: models[m]["mae"])
    p = models[closest].get(f"mae_dm_p_vs_{col}")
    ratio = models[closest].get(f"mae_ratio_vs_{col}")
    ratio_text = f"{ratio:.3f} times its MAE" if ratio is not None else f"MAE {models[closest]['mae']:.4f}"
    if better:
        baseline = f"the best baseline, {base} ({100 * base_e['mae']:.2f} %)"
        if len(better) == 1:
            return f"{where}, {closest} had a lower MAE than {baseline}: {ratio_text} (Diebold-Mariano {_p(p)})."
        return (f"{where}, {len(better)} of {len(models)} models ({', '.join(better)}) had a lower MAE than "
                f"{baseline}; the best of them, {closest}, had {ratio_text} (Diebold-Mariano {_p(p)}).")
    return (f"{where}, no model had a lower MAE than the best baseline, {base} ({100 * base_e['mae']:.2f} %); "
            f"the closest, {closest}, had {ratio_text} (Diebold-Mariano {_p(p)}).")


def ic_sentence(doc: Mapping[str, Any]) -> str | None:
    """Sentence 4: is the rank IC significant (Newey-West), for the best model and overall."""
    board = _get(doc, "scoreboard", "models") or {}
    models = {m: v.get("common") or {} for m, v in board.items()}
    models = {m: e for m, e in models.items() if e.get("kind") == "model" and e.get("rank_ic_mean") is not None}
    if not models:
        return None
    best, e = max(models.items(), key=lambda kv: kv[1]["rank_ic_mean"])
    significant = [m for m, x in models.items()
                   if x.get("rank_ic_p_newey_west") is not None and x["rank_ic_p_newey_west"] < ALPHA
                   and x["rank_ic_mean"] > 0]
    t = e.get("rank_ic_t_newey_west")
    stats = (f"Newey-West t {_num(t)}, lag {e.get('rank_ic_newey_west_lag')}, {_p(e.get('rank_ic_p_newey_west'))}"
             if t is not None else "no t-statistic")
    ic = _signed(e["rank_ic_mean"], 3)
    if best in significant:
        head = f"The rank IC is significant: {best}'s mean IC is {ic} ({stats})"
        if len(models) > 1:
            head += f"; {len(significant)} of {len(models)} models have a significantly positive IC at 5 %"
    elif significant:
        verb = "is" if len(significant) == 1 else "are"
        head = (f"The highest rank IC, {best}'s {ic}, is not significant ({stats}), while "
                f"{', '.join(significant)} {verb} significant at 5 %")
    else:
        head = f"No model's rank IC is significantly positive at 5 %: the highest, {best}'s, is {ic} ({stats})"
    momentum = _get(board, "momentum", "common") or {}
    if momentum.get("rank_ic_mean") is not None and best != "momentum":
        head += f"; momentum's is {_signed(momentum['rank_ic_mean'], 3)}"
        if momentum.get("rank_ic_t_newey_west") is not None:
            head += f" (t {_num(momentum['rank_ic_t_newey_west'])})"
    return head + "."


def verdict(doc: Mapping[str, Any], chosen: str) -> list[str]:
    """The verdict's sentences (3 or 4; a sentence whose figures are missing is left out)."""
    sentences = [weights_sentence(doc, chosen), risk_adjusted_sentence(doc), baselines_sentence(doc),
                 ic_sentence(doc)]
    return [s for s in sentences if s]


def verdict_section(doc: Mapping[str, Any], chosen: str) -> dict[str, Any]:
    """The ``verdict`` section of the metrics document: ``{"chosen_model", "sentence_1".."sentence_4"}``."""
    out: dict[str, Any] = {"chosen_model": chosen}
    out.update({f"sentence_{i}": s for i, s in enumerate(verdict(doc, chosen), start=1)})
    return out
