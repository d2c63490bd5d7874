"""The DP-SGD step does exactly what DESIGN.md says, checked on real computations."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from dptune import privacy
from dptune.data import builtin_dataset
from dptune.engine.dpsgd import DPSGDStep, make_optimizer, train
from dptune.engine.models import build_model
from dptune.engine.per_example import squared_norms_of_sums
from dptune.engine.sampling import Chunk, PoissonSampler
from dptune.errors import TrainingError
from dptune.spec.config import DPSGDConfig, ModelSpec


@pytest.fixture(scope="module")
def digits():
    return builtin_dataset("digits", seed=0)


def _step(model, config, x, y, noise_key=7):
    return DPSGDStep(model, make_optimizer(config), config, tf.constant(x), tf.constant(y), noise_key, False)


def _weights(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def _flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


def _chunk(indices, rows, microbatch=None, mask=None):
    indices = np.asarray(indices, np.int32)
    pad = rows - len(indices)
    return Chunk(
        indices=np.pad(indices, (0, pad)).astype(np.int32),
        mask=np.pad(np.ones(len(indices), np.float32) if mask is None else mask, (0, pad)).astype(np.float32),
        microbatch=np.pad(np.zeros(len(indices), np.int32) if microbatch is None else microbatch, (0, pad)).astype(
            np.int32
        ),
    )


def _update(model, before, learning_rate):
    """The applied averaged gradient: (θ_before − θ_after) / lr for plain SGD."""
    return (_flat(before) - _flat(_weights(model))) / learning_rate


@pytest.mark.parametrize("microbatches", [8, 2])
def test_a_single_example_moves_the_model_by_at_most_the_clip_norm(digits, microbatches):
    config = DPSGDConfig(l2_norm_clip=0.05, noise_multiplier=0.0, num_microbatches=microbatches, batch_size=8,
                         learning_rate=1.0)
    model = build_model(ModelSpec("mlp", hidden_units=(16,)), digits.input_shape, digits.num_classes, seed=0)
    step = _step(model, config, digits.x_train, digits.y_train)
    before = _weights(model)
    step.run([_chunk([3], rows=8, microbatch=np.array([1]))], 0)
    update_norm = np.linalg.norm(_update(model, before, 1.0)) * microbatches
    # the example's gradient is far larger than C, so its clipped term has norm exactly C
    assert update_norm == pytest.approx(0.05, rel=1e-4)


@pytest.mark.parametrize("microbatches", [16, 4])
def test_every_clipped_term_has_norm_at_most_c(digits, microbatches):
    config = DPSGDConfig(l2_norm_clip=0.3, noise_multiplier=0.0, num_microbatches=microbatches, batch_size=16)
    model = build_model(ModelSpec("seed_cnn"), (16, 16, 1), 10, seed=0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 16, 16, 1)).astype(np.float32) * 3
    y = rng.integers(0, 10, 16).astype(np.int32)
    step = _step(model, config, x, y)
    mb = rng.integers(0, microbatches, 16).astype(np.int32)
    chunk = _chunk(np.arange(16), rows=16, microbatch=mb)
    if config.per_example:
        from dptune.engine.per_example import LayerwiseGradients, clip_weights

        grads = LayerwiseGradients(model, tf.constant(x), tf.constant(y), tf.constant(chunk.mask))
        weights = clip_weights(grads.squared_norms(), 0.3, tf.constant(chunk.mask)).numpy()
        terms = [weights[:, None] * np.reshape(g.numpy(), (16, -1)) for g in grads.per_example()]
    else:
        sums, counts, _ = step._chunk_statistics(chunk.indices, chunk.mask, chunk.microbatch)
        weights = step.microbatch_clip_weights(squared_norms_of_sums(sums), counts).numpy()
        terms = [weights[:, None] * np.reshape(s.numpy(), (microbatches, -1)) for s in sums]
    norms = np.linalg.norm(np.concatenate(terms, axis=1), axis=1)
    assert norms.max() <= 0.3 * (1 + 1e-5)
    assert norms.max() == pytest.approx(0.3, rel=1e-4)  # these gradients are all large


@pytest.mark.parametrize("microbatches, xla", [(50, False), (5, False), (50, True)])
def test_noise_on_the_averaged_gradient_has_std_sigma_c_over_m(digits, microbatches, xla):
    config = DPSGDConfig(l2_norm_clip=1.5, noise_multiplier=1.3, num_microbatches=microbatches, batch_size=50,
                         learning_rate=1.0)
    model = build_model(ModelSpec("mlp", hidden_units=(256,)), digits.input_shape, digits.num_classes, seed=0)
    step = DPSGDStep(model, make_optimizer(config), config, tf.constant(digits.x_train),
                     tf.constant(digits.y_train), 7, xla)
    before = _weights(model)
    step.run([_chunk([], rows=56)], 0)  # nobody sampled: the update is the noise alone
    update = _update(model, before, 1.0)
    assert update.size > 15000
    assert np.std(update) == pytest.approx(1.3 * 1.5 / microbatches, rel=0.05)
    assert abs(np.mean(update)) < 4 * np.std(update) / np.sqrt(update.size)


@pytest.mark.parametrize("microbatches", [32, 4, 1])
def test_without_noise_and_clipping_the_update_is_plain_sgd(digits, microbatches):
    config = DPSGDConfig(l2_norm_clip=1e6, noise_multiplier=0.0, num_microbatches=microbatches, batch_size=32,
                         learning_rate=0.5, sampling="shuffle")
    spec = ModelSpec("mlp", hidden_units=(16,))
    dp_model = build_model(spec, digits.input_shape, digits.num_classes, seed=3)
    plain_model = build_model(spec, digits.input_shape, digits.num_classes, seed=3)
    indices = np.arange(32)
    microbatch = (indices // (32 // microbatches)).astype(np.int32)
    _step(dp_model, config, digits.x_train, digits.y_train).run([_chunk(indices, 32, microbatch)], 0)

    x, y = tf.constant(digits.x_train[:32]), tf.constant(digits.y_train[:32])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=plain_model(x, training=True))
        )
    grads = tape.gradient(loss, plain_model.trainable_variables)
    for variable, grad in zip(plain_model.trainable_variables, grads):
        variable.assign(variable - 0.5 * grad)
    np.testing.assert_allclose(_flat(_weights(dp_model)), _flat(_weights(plain_model)), rtol=1e-4, atol=1e-6)


def test_removing_one_example_changes_at_most_one_microbatch_term(digits):
    config = DPSGDConfig(l2_norm_clip=0.5, noise_multiplier=1.0, num_microbatches=6, batch_size=30)
    model = build_model(ModelSpec("mlp", hidden_units=(16,)), digits.input_shape, digits.num_classes, seed=0)
    step = _step(model, config, digits.x_train, digits.y_train)
    rng = np.random.default_rng(5)
    microbatch = rng.integers(0, 6, 30).astype(np.int32)
    with_all = _chunk(np.arange(30), 32, microbatch)
    without = _chunk(np.arange(30), 32, microbatch, mask=np.r_[np.ones(12), 0, np.ones(17)])

    def terms(chunk):
        sums, counts, _ = step._chunk_statistics(chunk.indices, chunk.mask, chunk.microbatch)
        weights = step.microbatch_clip_weights(squared_norms_of_sums(sums), counts).numpy()
        return np.concatenate([weights[:, None] * np.reshape(s.numpy(), (6, -1)) for s in sums], axis=1)

    difference = np.linalg.norm(terms(with_all) - terms(without), axis=1)
    changed = np.flatnonzero(difference > 1e-7)
    assert changed.tolist() == [microbatch[12]]
    assert difference[changed[0]] <= 2 * 0.5 * (1 + 1e-5)  # sensitivity 2C when m < B


@pytest.mark.parametrize("microbatches", [40, 5])
def test_a_step_split_over_chunks_equals_the_same_step_in_one_chunk(digits, microbatches):
    config = DPSGDConfig(l2_norm_clip=0.5, noise_multiplier=1.0, num_microbatches=microbatches, batch_size=40)
    spec = ModelSpec("mlp", hidden_units=(16,))
    one = build_model(spec, digits.input_shape, digits.num_classes, seed=0)
    split = build_model(spec, digits.input_shape, digits.num_classes, seed=0)
    indices = np.arange(45)
    microbatch = np.random.default_rng(0).integers(0, microbatches, 45).astype(np.int32)
    _step(one, config, digits.x_train, digits.y_train).run([_chunk(indices, 48, microbatch)], 0)
    _step(split, config, digits.x_train, digits.y_train).run(
        [_chunk(indices[:24], 24, microbatch[:24]), _chunk(indices[24:], 24, microbatch[24:])], 0
    )
    np.testing.assert_allclose(_flat(_weights(one)), _flat(_weights(split)), rtol=1e-5, atol=1e-6)


def test_unsupported_layers_fall_back_to_the_generic_path_with_the_same_result(digits):
    import keras

    config = DPSGDConfig(l2_norm_clip=0.2, noise_multiplier=0.5, num_microbatches=16, batch_size=16)
    inputs = keras.Input(digits.input_shape)
    hidden = keras.layers.Dense(16, activation="tanh")(keras.layers.Flatten()(inputs))
    normed = keras.layers.LayerNormalization()(hidden)
    outputs = keras.layers.Dense(digits.num_classes)(keras.layers.Concatenate()([hidden, normed]))
    generic_model = keras.Model(inputs, outputs)
    assert _step(generic_model, config, digits.x_train, digits.y_train).gradient_path == "generic"

    # the same function without LayerNormalization's parameters is layerwise: compare both paths
    keras.utils.set_random_seed(0)
    plain = keras.Sequential([keras.Input(digits.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(digits.num_classes)])
    twin = keras.models.clone_model(plain)
    twin.set_weights(plain.get_weights())
    fast = _step(plain, config, digits.x_train, digits.y_train)
    slow = DPSGDStep(twin, make_optimizer(config), config, tf.constant(digits.x_train), tf.constant(digits.y_train),
                     7, False, layerwise=False)
    assert (fast.gradient_path, slow.gradient_path) == ("layerwise", "generic")
    chunk = _chunk(np.arange(16), 16)
    fast.run([chunk], 0)
    slow.run([chunk], 0)
    np.testing.assert_allclose(_flat(_weights(plain)), _flat(_weights(twin)), rtol=1e-4, atol=1e-6)


def test_training_on_digits_reaches_a_sensible_accuracy_at_epsilon_3(digits):
    delta = privacy.default_delta(digits.n_train)
    sigma = privacy.calibrate_noise_multiplier(3.0, digits.n_train, 64, epochs=15, delta=delta)
    config = DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=sigma, num_microbatches=64, batch_size=64,
                         learning_rate=0.1, epochs=15, optimizer="momentum", seed=1)
    result = train(digits, ModelSpec("mlp", hidden_units=(64,)), config)
    assert result.epsilon_rdp <= 3.0
    assert result.epsilon_rdp == pytest.approx(3.0, rel=0.01)
    assert result.val_accuracy >= 0.85  # non-private: ~0.97; 0.90 measured at this epsilon
    assert len(result.history) == 15
    assert result.history[-1].epsilon == pytest.approx(result.epsilon_rdp)
    assert [h.step for h in result.history] == [privacy.num_steps(digits.n_train, 64, e) for e in range(1, 16)]
    assert result.steps == privacy.num_steps(digits.n_train, 64, 15)
    assert result.gradient_path == "layerwise"


def test_the_debug_option_repeats_a_run_exactly(digits):
    config = DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=1.0, num_microbatches=8, batch_size=32, epochs=2,
                         seed=11, debug_fixed_noise=True)
    spec = ModelSpec("mlp", hidden_units=(16,))
    first, second = train(digits, spec, config), train(digits, spec, config)
    assert [h.val_loss for h in first.history] == [h.val_loss for h in second.history]
    np.testing.assert_array_equal(_flat(_weights(first.model)), _flat(_weights(second.model)))
    third = train(digits, spec, config.replace(seed=12))
    assert not np.array_equal(_flat(_weights(first.model)), _flat(_weights(third.model)))


def test_a_callback_stops_training_early(digits):
    config = DPSGDConfig(num_microbatches=32, batch_size=32, epochs=5)
    result = train(digits, ModelSpec("logreg"), config, on_epoch_end=lambda metrics: metrics.epoch == 2)
    assert result.stopped_early and len(result.history) == 2
    assert result.steps == privacy.num_steps(digits.n_train, 32, 2)
    assert result.epsilon_rdp == pytest.approx(
        privacy.compute_epsilon(digits.n_train, 32, config.noise_multiplier, steps=result.steps,
                                delta=result.delta).epsilon_rdp
    )


def test_a_diverging_run_raises_a_clear_training_error(digits):
    config = DPSGDConfig(l2_norm_clip=1e30, noise_multiplier=1e30, num_microbatches=32, batch_size=32,
                         learning_rate=1e30, epochs=2)
    with pytest.raises(TrainingError, match="lower the learning rate"):
        train(digits, ModelSpec("logreg"), config)


def test_the_step_is_traced_at_the_first_step_once_per_chunk_size_not_per_step(digits):
    config = DPSGDConfig(num_microbatches=4, batch_size=32)
    model = build_model(ModelSpec("mlp", hidden_units=(8,)), digits.input_shape, digits.num_classes, seed=0)
    step = _step(model, config, digits.x_train, digits.y_train)
    sampler = PoissonSampler(digits.n_train, 32, 4, np.random.default_rng(0))
    step.run(sampler.next_step(), 0)
    assert step._fused.experimental_get_tracing_count() == len(step.chunk_sizes) > 1
    for number in range(1, 20):
        step.run(sampler.next_step(), number)
    assert step._fused.experimental_get_tracing_count() == len(step.chunk_sizes)


def test_xla_with_padded_chunks_trains_the_same_model_as_plain_graphs(digits):
    # noise 0: XLA draws other (equally distributed) Gaussian numbers from the same seed
    config = DPSGDConfig(l2_norm_clip=0.5, noise_multiplier=0.0, num_microbatches=32, batch_size=32, epochs=1,
                         seed=4, debug_fixed_noise=True)
    spec = ModelSpec("mlp", hidden_units=(16,))
    plain = train(digits, spec, config, jit_compile=False)
    compiled = train(digits, spec, config, jit_compile=True)
    np.testing.assert_allclose(_flat(_weights(plain.model)), _flat(_weights(compiled.model)), rtol=1e-3, atol=1e-5)
    assert plain.epsilon_rdp == compiled.epsilon_rdp


@pytest.mark.parametrize("seed", [None, 0])
def test_every_run_draws_fresh_secret_randomness_whatever_the_seed(digits, seed):
    config = DPSGDConfig(num_microbatches=32, batch_size=32, epochs=1, seed=seed)
    first = train(digits, ModelSpec("logreg"), config)
    second = train(digits, ModelSpec("logreg"), config)
    assert not np.array_equal(_flat(_weights(first.model)), _flat(_weights(second.model)))
    assert first.epsilon_rdp == second.epsilon_rdp


@pytest.mark.gpu
@pytest.mark.skipif(not tf.config.list_physical_devices("GPU"), reason="TensorFlow sees no GPU here")
def test_training_runs_on_the_gpu_when_there_is_one(digits):
    config = DPSGDConfig(num_microbatches=32, batch_size=32, epochs=1)
    result = train(digits, ModelSpec("mlp", hidden_units=(16,)), config)
    assert result.device.startswith("GPU")
    assert "GPU" in result.model.trainable_variables[0].value.device


@pytest.mark.parametrize("spec, layerwise", [
    (ModelSpec("mlp", hidden_units=(64,)), True),  # flat Dense inputs: microbatch norms from ghost norms
    (ModelSpec("seed_cnn"), True),
    (ModelSpec("mlp", hidden_units=(16,)), False),  # the generic path
])
def test_a_whole_step_clipped_from_microbatch_norms_equals_clipping_the_microbatch_sums(digits, spec, layerwise):
    """The one-chunk step's route (norms of the microbatches without their sums, then one
    weighted sum over the examples) gives the same clipped sum as clipping each microbatch's
    sum, with an empty microbatch and padded rows in the chunk."""
    x, y = digits.x_train, digits.y_train
    if spec.kind == "seed_cnn":
        x = np.resize(x[:, :64], (len(x), 28, 28, 1)) * 3  # an image shape for the CNN
    config = DPSGDConfig(l2_norm_clip=0.05, num_microbatches=6, batch_size=40)
    model = build_model(spec, x.shape[1:], digits.num_classes, seed=0)
    step = DPSGDStep(model, make_optimizer(config), config, tf.constant(x), tf.constant(y), 7, False, layerwise=layerwise)
    microbatch = np.random.default_rng(3).choice([0, 1, 2, 4, 5], 36).astype(np.int32)  # microbatch 3 is empty
    chunk = _chunk(np.arange(36), 40, microbatch)
    args = (tf.constant(chunk.indices), tf.constant(chunk.mask), tf.constant(chunk.microbatch))
    whole, whole_loss = step._chunk_statistics(*args, whole_step=True)
    summed, summed_loss = step.clipped_sum(step._chunk_statistics(*args))
    np.testing.assert_allclose(_flat([g.numpy() for g in whole]), _flat([g.numpy() for g in summed]), rtol=1e-4, atol=1e-7)
    assert float(whole_loss) == pytest.approx(float(summed_loss))
    sums, counts, _ = step._chunk_statistics(*args)
    clipped_norms = step.microbatch_clip_weights(squared_norms_of_sums(sums), counts).numpy() * np.sqrt(
        squared_norms_of_sums(sums).numpy())
    assert clipped_norms.max() == pytest.approx(0.05, rel=1e-4)  # clipping was active: the test is not vacuous
