"""The verdict: sentences computed from the metrics document, opposite figures give opposite verdicts."""

from __future__ import annotations

import copy

from job.report.inputs import verdict_sentences
from job.verdict import chosen_model, verdict, verdict_section


def _doc(*, skill: bool) -> dict:
    """A metrics document where the models either have skill everywhere or nowhere."""
    sign = 1.0 if skill else -1.0
    sharpe = {"ridge": 0.93 + sign * 0.30, "ensemble": 0.93 + sign * 0.10}

    def rel(model: str) -> dict:
        d = sharpe[model] - 0.93
        return {"full_net": {"sharpe_difference_vs_benchmark": d,
                             "sharpe_difference_p_vs_benchmark": 0.03 if skill else 0.45,
                             "sharpe_difference_vs_equal_weight": d + 0.05,
                             "sharpe_difference_p_vs_equal_weight": 0.02 if skill else 0.60}}

    def board(kind: str, mae: float, ic: float, t: float, p: float, rank: int, **extra: float) -> dict:
        return {"common": {"kind": kind, "mae": mae, "rank_ic_mean": ic, "rank_ic_t_newey_west": t,
                           "rank_ic_p_newey_west": p, "rank_ic_newey_west_lag": 4, "mae_rank": rank, **extra}}

    model_mae = 0.040 if skill else 0.046
    return {
        "models": {m: {"full_net": {"sharpe": s}} for m, s in sharpe.items()},
        "benchmark": {"full": {"sharpe": 0.93}}, "equal_weight": {"full": {"sharpe": 0.88}},
        "windows": {"full": {"start": "2010-11", "end": "2025-02", "months": 172}},
        "relative": {"models": {m: rel(m) for m in sharpe}},
        "scoreboard": {"window": {"months": 172}, "models": {
            "ridge": board("model", model_mae, 0.08 * sign, 3.1 * sign, 0.002 if skill else 0.30, 1 if skill else 4,
                           mae_ratio_vs_historical_mean=model_mae / 0.043, mae_dm_p_vs_historical_mean=0.01),
            "ensemble": board("model", model_mae + 0.001, 0.02 * sign, 0.8 * sign, 0.42, 2 if skill else 5,
                              mae_ratio_vs_historical_mean=(model_mae + 0.001) / 0.043,
                              mae_dm_p_vs_historical_mean=0.2),
            "historical-mean": board("baseline", 0.043, 0.01, 0.3, 0.76, 3 if skill else 1),
            "momentum": board("baseline", 0.0435, 0.03, 1.1, 0.27, 4 if skill else 2),
            "persistence": board("baseline", 0.058, -0.01, -0.2, 0.84, 5 if skill else 3)}},
        "execution": {"execution_lag_days": 4, "models": {"ensemble": {
            "executed_net": {"sharpe": sharpe["ensemble"] - 0.04}, "month_end_net": {"sharpe": sharpe["ensemble"]}}}},
    }


def test_opposite_figures_give_opposite_verdicts() -> None:
    good, bad = verdict(_doc(skill=True), "ensemble"), verdict(_doc(skill=False), "ensemble")
    assert len(good) == len(bad) == 4
    assert good[0].startswith("Next month's weights come from the ensemble model, 2nd of 5")
    assert "net Sharpe is 0.99 against 1.03" in good[0]
    assert "2 of 2 models beat both SPY and equal weight on a risk-adjusted basis; the best is ridge: Sharpe 1.23" \
        in good[1] and "p = 0.03 against SPY" in good[1]
    assert "significant at 5 %" in good[1] and "not significant" not in good[1]
    assert bad[1].startswith("No model beat both SPY and equal weight")
    assert "the best, ensemble, had a Sharpe of 0.83 against SPY's 0.93" in bad[1] and "p = 0.45" in bad[1]
    assert "2 of 2 models (ridge, ensemble) had a lower MAE than the best baseline, historical-mean" in good[2]
    assert good[2].endswith("the best of them, ridge, had 0.930 times its MAE (Diebold-Mariano p = 0.01).")
    assert "no model had a lower MAE than the best baseline, historical-mean (4.30 %)" in bad[2]
    assert good[3].startswith("The rank IC is significant: ridge's mean IC is +0.080 "
                              "(Newey-West t 3.10, lag 4, p < 0.01)")
    assert bad[3].startswith("No model's rank IC is significantly positive at 5 %")
    assert "momentum's is +0.030" in bad[3]


def test_sentences_follow_the_numbers() -> None:
    """Change one figure, the sentence changes with it; a missing section drops its sentence."""
    doc = _doc(skill=False)
    changed = copy.deepcopy(doc)
    changed["relative"]["models"]["ensemble"]["full_net"]["sharpe_difference_p_vs_benchmark"] = 0.12
    assert verdict(doc, "ensemble")[1] != verdict(changed, "ensemble")[1]
    assert "p = 0.12 against SPY" in verdict(changed, "ensemble")[1]
    del changed["scoreboard"]
    sentences = verdict(changed, "ridge")
    assert len(sentences) == 2 and sentences[0] == "Next month's weights come from the ridge model."


def test_verdict_section_round_trips_through_the_report_adapter() -> None:
    doc = _doc(skill=True)
    section = verdict_section(doc, chosen_model("ensemble", ["ridge", "ensemble"]))
    assert section["chosen_model"] == "ensemble"
    assert verdict_sentences({"verdict": section}) == verdict(doc, "ensemble")
    assert chosen_model("ensemble", ["ridge", "tree"]) == "tree"


def test_the_sections_survive_the_published_metrics_table() -> None:
    """Verdict, scoreboard, execution, leverage and analytics are rebuilt for the report from the long
    ``metrics`` table (as ``rotation report`` and ``rotation query`` read them) exactly as computed."""
    import pandas as pd

    from job.leverage import leverage_summary
    from job.report.inputs import analytics_sections, execution_section, leverage_section, scoreboard_section
    from job.report.published import metrics_document
    from job.stages.evaluation import metrics_frame

    doc = _doc(skill=True)
    doc["execution"].update({"assumption": "The backtest trades ...",
                             "window": {"start": "2011-01", "end": "2025-01", "months": 169}})
    doc["execution"]["models"]["ensemble"].update({"executed": {"sharpe": 1.0}, "month_end": {"sharpe": 1.1}})
    doc["leverage"] = leverage_summary(pd.DataFrame({"model": "ridge", "decision_month": pd.Period("2020-01", "M"),
                                                     "asset": ["A", "B"], "predicted": [0.01, 0.2]}), 0.15, 5.0)
    doc["verdict"] = verdict_section(doc, "ensemble")
    frame = metrics_frame(doc)
    assert set(frame.loc[frame["section"] == "verdict", "metric"]) >= {"sentence_1", "sentence_4", "chosen_model"}
    board = frame[(frame["section"] == "scoreboard") & (frame["metric"] == "mae")]
    assert set(board["model"]) == {"ridge", "ensemble", "historical-mean", "momentum", "persistence"}
    assert set(board["period"]) == {"common"}
    back = metrics_document(frame)
    assert verdict_sentences(back) == verdict(doc, "ensemble") and len(verdict_sentences(back)) == 4
    table = scoreboard_section(back).table
    assert list(table["model"]) == ["ridge", "ensemble", "historical-mean", "momentum", "persistence"]
    assert scoreboard_section(back).months == 172
    execution = execution_section(back)
    assert set(execution.table["timing"]) == {"executed", "month_end"} and execution.execution_lag_days == 4
    leverage = leverage_section(back)
    assert leverage.triggers.to_dict("records") == [{"model": "ridge", "asset": "B", "months": 1}]
    assert leverage.sentence == doc["leverage"]["sentence"]
    assert analytics_sections(back)["relative"] == doc["relative"]
