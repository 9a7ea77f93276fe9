"""The whole protocol on a small matrix: one document, every trial counted, JSON-safe, rendered to Markdown."""

from __future__ import annotations

import json

import numpy as np

from lib.research.protocol.bootstrap import BootstrapParams
from lib.research.protocol.cpcv import CpcvParams
from lib.research.protocol.markdown import render_markdown
from lib.research.protocol.run import ProtocolParams, holdout_section, run_protocol
from lib.research.protocol.walkforward import CalendarLayout
from lib.research.study.json_values import json_safe
from tests.unit.research.protocol.helpers import noise

PARAMS = ProtocolParams(walk_forward=CalendarLayout(train="120D", test="60D"), cpcv=CpcvParams(n_folds=5),
                        pbo_blocks=8, bootstrap=BootstrapParams(resamples=200))


def test_protocol_document_counts_every_trial_and_renders() -> None:
    returns = noise(500, 7, seed=5)
    returns["c4"] += 0.004  # the one real edge
    benchmark = noise(500, 1, seed=6, scale=0.03)["c0"]
    result = run_protocol(returns, benchmark, PARAMS, project_trials=40)
    document = json_safe(result.document)
    json.dumps(document, allow_nan=False)
    assert document["trial_count"] == 7 and len(document["trials"]) == 7
    assert result.chosen == document["selection"]["chosen"] == "c4"
    assert document["pbo"]["pbo"] < 0.05
    assert document["selection"]["deflated_sharpe"]["n_trials"] == 7
    assert document["selection"]["deflated_sharpe_project_trials"]["n_trials"] == 40
    assert set(document["walk_forward"]["chosen_counts"]) == {"c4"}
    np.testing.assert_allclose(result.walk_forward_oos.to_numpy(),
                               returns.loc[result.walk_forward_oos.index, "c4"].to_numpy())
    report = {"run_id": "r", "research_end": "2020-05-14", "source": "synthetic", "families": ["noise"],
              "protocol": document}
    report["final_holdout"] = json_safe(holdout_section("c4", returns["c4"].iloc[-100:], benchmark.iloc[-100:],
                                                        BootstrapParams(resamples=200)))
    text = render_markdown(report)
    assert "**Trials: 7**" in text and "**Chosen: `c4`**" in text and "Final hold-out" in text
    assert "(N = 40," in text
