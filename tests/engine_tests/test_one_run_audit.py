"""The one-run audit can fail: on the same tiny data, the real engine's lower bound stays below the
accountant's ε while a deliberately broken engine (clipping off) is caught exceeding it."""

import numpy as np

from dptune.data.builtins import builtin_dataset
from dptune.engine.one_run_audit import CanaryStep, one_run_audit
from dptune.spec.config import DPSGDConfig, ModelSpec


class UnclippedCanaryStep(CanaryStep):
    """The broken variant, for this test only: clipping is off (every weight is 1), for the
    training rows and the canaries alike, while the noise and the accountant still assume C."""

    def clip_weights(self, squared_norms, mask):
        return mask


DATA = builtin_dataset("synthetic", n_examples=2000, n_features=20)
MODEL = ModelSpec(kind="mlp", hidden_units=(64,))  # 1,474 parameters: room for 1,000 Dirac canaries
CONFIG = DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=2.0, num_microbatches=100, batch_size=100, epochs=2,
                     learning_rate=0.5)


def test_white_box_audit_passes_the_engine_and_catches_the_broken_variant():
    rng = np.random.default_rng(7)
    honest = one_run_audit(DATA, MODEL, CONFIG, canaries=1000, mode="white_box", delta=1e-5, rng=rng)
    broken = one_run_audit(DATA, MODEL, CONFIG, canaries=1000, mode="white_box", delta=1e-5, rng=rng,
                           step_factory=UnclippedCanaryStep)
    claimed = honest.epsilon_rdp
    assert 0.5 < claimed < 1.5 and broken.epsilon_rdp == claimed
    assert honest.audit.epsilon_lower_bound < claimed
    assert broken.audit.epsilon_lower_bound > claimed
    assert honest.audit.canaries == broken.audit.canaries == 1000 and honest.delta == 1e-5


def test_black_box_audit_of_the_engine_trains_the_canaries_and_stays_below_epsilon():
    report = one_run_audit(DATA, MODEL, CONFIG, canaries=200, mode="black_box", delta=1e-5,
                           rng=np.random.default_rng(3))
    assert report.n_train == DATA.n_train + report.audit.included
    assert report.audit.epsilon_lower_bound < report.epsilon_rdp
    assert report.to_dict()["accountant_epsilon_rdp"] == report.epsilon_rdp
