"""`Distiller`: trains a student classifier against a frozen teacher with `model.fit`.

Its objective is `(1 - alpha) * hard + alpha * soft + beta * patient`
(`training.baselines.distillation_losses`): DistilBERT-style is alpha = 1 with the T^2-scaled KL
soft loss; BERT-PKD uses the soft cross-entropy and the patient loss on the [CLS] states of the
matched layers.
"""

import keras
import tensorflow as tf

from powerbert_tf.serialization import register
from training.baselines.distillation_losses import hard_loss, patient_loss, soft_loss


@register
class Distiller(keras.Model):
    """A student trained on a teacher's outputs; calling it runs the student.

    Args:
        student, teacher: `PowerBertClassifier`s with the same number of outputs. The teacher is
            frozen and runs in inference mode.
        soft_kind: "kl" (DistilBERT) or "cross_entropy" (BERT-PKD).
        temperature, alpha, beta: the objective's weights (see the module docstring).
        layer_pairs: (student layer, teacher layer) indices, 0-based, whose [CLS] states the
            patient loss matches.

    Call args:
        inputs: dict of int (B, T) features. Returns the student's float (B, C) logits.
    """

    def __init__(self, student, teacher, soft_kind="kl", temperature=2.0, alpha=1.0, beta=0.0,
                 layer_pairs=(), **kwargs):
        super().__init__(**kwargs)
        if isinstance(student, dict):
            student = keras.saving.deserialize_keras_object(student)
        if isinstance(teacher, dict):
            teacher = keras.saving.deserialize_keras_object(teacher)
        if student.num_classes != teacher.num_classes:
            raise ValueError(f"student has {student.num_classes} outputs, teacher {teacher.num_classes}")
        if not 0.0 <= alpha <= 1.0 or beta < 0 or temperature <= 0:
            raise ValueError(f"need 0 <= alpha <= 1, beta >= 0, temperature > 0; got alpha={alpha}, "
                             f"beta={beta}, temperature={temperature}")
        for model in (student, teacher):
            if not model.built:
                model.build()
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        # A teacher deserialized from a .keras file arrives with `trainable=False` already set but
        # its sublayers' variables still trainable (the setter never ran on them); a resumed fit
        # would then build its optimizer for the teacher's variables too and drop its saved state.
        for variable in self.teacher.variables:
            variable.trainable = False
        self.soft_kind, self.temperature, self.alpha, self.beta = soft_kind, temperature, alpha, beta
        self.layer_pairs = tuple((int(s), int(t)) for s, t in layer_pairs)
        self.is_regression = student.num_classes == 1
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _forward(self, model, features, training):
        """(logits (B, C), [CLS] states of the layers the patient loss needs)."""
        logits, outputs = model.forward(features, training=training, return_hidden_states=bool(self.layer_pairs))
        return logits, outputs.get("hidden_states", [])

    def objective(self, features, labels, training):
        teacher_logits, teacher_states = self._forward(self.teacher, features, False)
        student_logits, student_states = self._forward(self.student, features, training)
        loss = self.alpha * soft_loss(self.soft_kind, teacher_logits, student_logits, self.temperature,
                                      self.is_regression)
        if self.alpha < 1.0:
            loss += (1.0 - self.alpha) * hard_loss(labels, student_logits, self.is_regression)
        if self.layer_pairs:
            loss += self.beta * patient_loss([student_states[s][:, 0, :] for s, _ in self.layer_pairs],
                                             [teacher_states[t][:, 0, :] for _, t in self.layer_pairs])
        return loss

    def train_step(self, data):
        features, labels = data
        with tf.GradientTape() as tape:
            loss = self.objective(features, labels, training=True)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def get_config(self):
        config = super().get_config()
        config.update(student=keras.saving.serialize_keras_object(self.student),
                      teacher=keras.saving.serialize_keras_object(self.teacher),
                      soft_kind=self.soft_kind, temperature=self.temperature, alpha=self.alpha,
                      beta=self.beta, layer_pairs=[list(p) for p in self.layer_pairs])
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
