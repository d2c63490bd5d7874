"""Distributed selective SGD (dptune.engine.collaborative) on the built-in digits: the paper's
headline, the upload and download rules on flat vectors, and the private modes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dptune.data import builtin_dataset
from dptune.engine import collaborative
from dptune.engine.collaborative import (
    download_indices,
    run_baselines,
    run_collaborative,
    select_upload,
    upload_bytes,
)
from dptune.privacy.collaborative import svt_upload_noise
from dptune.spec.collaborative import CollaborativeConfig, CollaborativePrivacy, ShardSpec
from dptune.spec.config import ModelSpec

MODEL = ModelSpec(kind="mlp", hidden_units=(64,))


@pytest.fixture(scope="module")
def digits():
    return builtin_dataset("digits")


def test_headline_theta_u_0_1_is_close_to_centralized_and_clearly_above_standalone(digits):
    """Shokri & Shmatikov's headline on digits: 5 iid participants (~285 rows each), 10 rounds.

    Tolerances: "clearly above standalone" is at least 5 points above the mean standalone
    accuracy (measured: about 10 points); "close to centralized" is within 3 points of it
    (measured: under 1 point; 3 points is about 11 of the 374 validation rows, which leaves
    room for numerical differences across machines while still failing if sharing were broken:
    θu = 0.01 already falls about 7 points short)."""
    config = CollaborativeConfig(participants=5, rounds=10, theta_upload=0.1, seed=0)
    baselines = run_baselines(digits, MODEL, config)
    result = run_collaborative(digits, MODEL, config)
    standalone = float(np.mean(baselines.standalone_accuracies))
    assert result.global_accuracy >= standalone + 0.05
    assert result.global_accuracy >= baselines.centralized_accuracy - 0.03
    assert len(result.history) == 10 and result.history[-1] == result.global_accuracy
    assert result.uploads_per_round == math.ceil(0.1 * result.parameter_count)
    assert result.bytes_uploaded_per_round == (8.0 * result.uploads_per_round,) * 5
    # the gap at θu = 0.01 is reported (here: measured, not asserted beyond being a fraction)
    sparse = run_collaborative(digits, MODEL, config.replace(theta_upload=0.01))
    assert 0 < sparse.global_accuracy <= 1
    assert sparse.bytes_uploaded_per_round[0] == 8.0 * sparse.uploads_per_round


def test_largest_selection_uploads_the_largest_changes():
    update = np.array([0.1, -5.0, 0.2, 3.0, -0.05], np.float32)
    config = CollaborativeConfig(selection="largest")
    rng = np.random.default_rng(0)
    indices, values = select_upload(update, config, 2, rng, rng, None)
    assert sorted(indices.tolist()) == [1, 3]
    assert np.array_equal(values, update[indices])


def test_random_above_threshold_takes_at_most_c_values_above_tau():
    rng = np.random.default_rng(0)
    update = rng.normal(size=10_000).astype(np.float32)
    config = CollaborativeConfig(selection="random_above_threshold", tau=1.0)
    indices, values = select_upload(update, config, 500, rng, rng, None)
    assert len(indices) == 500 and len(np.unique(indices)) == 500
    assert (np.abs(values) >= 1.0).all()
    few, _ = select_upload(update, config.replace(tau=3.5), 500, rng, rng, None)
    assert len(few) == int(np.sum(np.abs(update) >= 3.5)) < 500  # fewer candidates than c: all of them


def test_svt_upload_is_clipped_and_bounded_by_c():
    rng = np.random.default_rng(1)
    update = rng.normal(scale=0.1, size=5000).astype(np.float32)
    noise = svt_upload_noise(epsilon=1e6, gamma=0.05, rounds=1, uploads=100)  # huge ε: the rule is visible
    config = CollaborativeConfig(selection="random_above_threshold", tau=0.04,
                                 privacy=CollaborativePrivacy("laplace_svt", epsilon=1e6, gamma=0.05))
    indices, values = select_upload(update, config, 100, rng, rng, noise)
    assert len(indices) == 100 and len(np.unique(indices)) == 100
    assert (np.abs(values) <= 0.05).all()
    assert (np.abs(update[indices]) >= 0.04 - 1e-3).all()  # above τ, as the noise is negligible


def test_most_updated_download_prefers_the_most_updated_parameters():
    rng = np.random.default_rng(0)
    counts = np.array([0, 5, 1, 7, 0, 2])
    config = CollaborativeConfig(theta_download=0.5, download="most_updated")
    assert sorted(download_indices(counts, 3, config, rng).tolist()) == [1, 3, 5]
    assert len(np.unique(download_indices(counts, 3, config.replace(download="random"), rng))) == 3
    assert download_indices(counts, 6, config, rng).tolist() == list(range(6))


def test_upload_bytes_is_sparse_or_dense_whichever_is_smaller():
    assert upload_bytes(10, 1000) == 80
    assert upload_bytes(1000, 1000) == 4000


def test_dp_sgd_participants_train_privately_and_are_charged(digits):
    config = CollaborativeConfig(participants=3, rounds=2, theta_upload=0.1,
                                 privacy=CollaborativePrivacy("dp_sgd", noise_multiplier=1.0, l2_norm_clip=1.0,
                                                              batch_size=32))
    result = run_collaborative(digits, MODEL, config)
    assert all(math.isfinite(charge.epsilon) and charge.mechanism == "dp_sgd" for charge in result.privacy)
    assert result.worst_epsilon == max(charge.epsilon for charge in result.privacy)
    assert result.privacy[0].steps == 2 * math.ceil(result.shard_sizes[0] / 32)
    assert result.global_accuracy > 0.2  # it learns something in two rounds, with noise


def test_laplace_svt_mode_runs_and_charges_the_budget(digits):
    config = CollaborativeConfig(participants=3, rounds=2, theta_upload=0.1, selection="random_above_threshold",
                                 privacy=CollaborativePrivacy("laplace_svt", epsilon=50.0, gamma=0.01))
    result = run_collaborative(digits, MODEL, config)
    assert result.worst_epsilon == pytest.approx(50.0)
    assert all(b <= 8.0 * result.uploads_per_round for b in result.bytes_uploaded_per_round)


def test_label_skewed_split_runs(digits):
    config = CollaborativeConfig(participants=4, rounds=2, split=ShardSpec("dirichlet", alpha=0.3), order="random",
                                 theta_download=0.5, download="random")
    result = run_collaborative(digits, MODEL, config)
    assert sum(result.shard_sizes) == digits.n_train
    assert len(result.participant_accuracies) == 4


def test_shared_dp_sgd_step_samples_only_the_participants_rows(digits, monkeypatch):
    """The one compiled DP-SGD step serves every participant: each step's sampled rows (mask 1)
    are rows of the participant's own shard, and every step gets a distinct noise counter."""
    seen = []

    def record(self, rows, chunks):
        seen.append((rows, [c.indices[c.mask > 0] for c in chunks], self.step))
        self.step += 1

    monkeypatch.setattr(collaborative.SharedDPSGD, "run", record)
    config = CollaborativeConfig(participants=3, rounds=1, privacy=CollaborativePrivacy(
        "dp_sgd", noise_multiplier=1.0, l2_norm_clip=1.0, batch_size=32))
    shards = collaborative.make_shards(digits, config)
    run_collaborative(digits, MODEL, config, shards=shards)
    assert [step for *_, step in seen] == list(range(len(seen)))
    for rows, sampled, _step in seen:
        assert any(rows is shard for shard in shards.indices)
        assert all(np.all(part < len(rows)) for part in sampled)  # indices into the shard, mapped in run()


@pytest.mark.parametrize("privacy", [
    CollaborativePrivacy("none"),
    CollaborativePrivacy("laplace_svt", epsilon=50.0, gamma=0.01),
    CollaborativePrivacy("dp_sgd", noise_multiplier=1.0, l2_norm_clip=1.0, batch_size=32),
], ids=lambda privacy: privacy.kind)
def test_a_participants_privacy_noise_is_secret_and_fresh_its_public_choices_are_not(digits, privacy):
    """Two participants built from the same YAML (same seed, same rows, same starting point)
    upload the same thing without privacy (every choice is public, from the seed), and different
    things with privacy: the Laplace noise and DP-SGD's sampling and noise come from a fresh
    secret generator, never from the seed (if they did, anyone with the YAML could subtract them)."""
    config = CollaborativeConfig(participants=3, rounds=1, theta_upload=0.1, seed=0, privacy=privacy,
                                 selection="random_above_threshold" if privacy.kind == "laplace_svt" else "largest")
    rows = collaborative.make_shards(digits, config).indices[0]

    def one_upload():
        flat = collaborative.fresh_flat_model(digits, MODEL, config)
        shared = collaborative.SharedDPSGD(flat, digits, config) if privacy.kind == "dp_sgd" else None
        participant = collaborative.Participant(flat, digits, rows, config, collaborative.participant_rng(config, 0),
                                                flat.get(), shared)
        return participant.local_round(np.arange(0), np.zeros(0, np.float32))

    (first_indices, first_values), (second_indices, second_values) = one_upload(), one_upload()
    same = np.array_equal(first_indices, second_indices) and np.array_equal(first_values, second_values)
    assert same == (privacy.kind == "none")
