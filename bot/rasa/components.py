"""Custom Rasa components (imported by Rasa from the Rasa venv, Python 3.10).

``CompiledLanguageModelFeaturizer`` is Rasa's ``LanguageModelFeaturizer``
with the language model's forward pass wrapped in one ``tf.function``.
Rasa calls the Hugging Face TF model eagerly, op by op: on these 2 cores a
one-sentence MiniLM pass costs ~35 ms eager and ~6 ms as a traced graph
(``bench/bot_latency.py`` reports the effect end to end). The input signature
has unknown batch and sequence dimensions, so one trace serves every message
length and training batch; the outputs are the same numbers, so a model
trained with either featurizer gives the same predictions.

config.yml names it ``bot.rasa.components.CompiledLanguageModelFeaturizer``;
``bot.rasa.model`` puts the repository root on ``PYTHONPATH`` for ``rasa
train`` and ``rasa run``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.featurizers.dense_featurizer.lm_featurizer import LanguageModelFeaturizer


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class CompiledLanguageModelFeaturizer(LanguageModelFeaturizer):
    """LanguageModelFeaturizer whose model call runs as a traced TensorFlow graph."""

    def __init__(self, config: dict[str, Any], execution_context: ExecutionContext) -> None:
        super().__init__(config, execution_context)
        model = self.model

        @tf.function(
            input_signature=[
                tf.TensorSpec(shape=[None, None], dtype=tf.int32, name="input_ids"),
                tf.TensorSpec(shape=[None, None], dtype=tf.float32, name="attention_mask"),
            ]
        )
        def sequence_hidden_states(input_ids: tf.Tensor, attention_mask: tf.Tensor) -> tf.Tensor:
            # The first output of every Hugging Face TF model is the sequence's hidden states.
            return model(input_ids, attention_mask=attention_mask, training=False)[0]

        self._sequence_hidden_states = sequence_hidden_states

    def _compute_batch_sequence_features(
        self, batch_attention_mask: np.ndarray, padded_token_ids: list[list[int]]
    ) -> np.ndarray:
        hidden_states = self._sequence_hidden_states(
            tf.convert_to_tensor(padded_token_ids, dtype=tf.int32),
            tf.convert_to_tensor(batch_attention_mask, dtype=tf.float32),
        )
        return hidden_states.numpy()
