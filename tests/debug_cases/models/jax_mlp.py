"""A JAX MLP as JAX tutorials write it: params as a list of (W, b), x @ W + b, a loss on
(params, batch), and a hand-written custom_vjp activation (one correct, one wrong)."""

import jax
import jax.numpy as jnp

layer_sizes = [6, 12, 12, 4]


def init_params(sizes, key):
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (n_in, n_out)) * jnp.sqrt(2.0 / n_in),
             jax.random.normal(k, (n_out,)) * 0.1)
            for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])]  # noqa: B905


def predict(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def loss(params, batch):
    inputs, targets = batch
    logits = predict(params, inputs)
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * targets, axis=-1))


@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


def softplus_fwd(x):
    return softplus(x), x


def softplus_bwd(x, g):
    return (g * jax.nn.sigmoid(x),)


softplus.defvjp(softplus_fwd, softplus_bwd)


@jax.custom_vjp
def bad_softplus(x):
    return jnp.logaddexp(x, 0.0)


def bad_softplus_fwd(x):
    y = bad_softplus(x)
    return y, y


def bad_softplus_bwd(y, g):
    return (g * jax.nn.sigmoid(y),)  # the bug: the derivative at the output y


bad_softplus.defvjp(bad_softplus_fwd, bad_softplus_bwd)


def mlp_softplus(params, x):
    for w, b in params[:-1]:
        x = softplus(x @ w + b)
    w, b = params[-1]
    return jax.nn.log_softmax(x @ w + b)


def mlp_bad_softplus(params, x):
    for w, b in params[:-1]:
        x = bad_softplus(x @ w + b)
    w, b = params[-1]
    return jax.nn.log_softmax(x @ w + b)


@jax.custom_vjp
def dense(x, w, b):
    return x @ w + b


def dense_fwd(x, w, b):
    return dense(x, w, b), (x, w)


def dense_bwd(res, g):
    x, w = res
    return g @ w.T, 2 * x.T @ g, g.sum(0)  # the bug: dW doubled


dense.defvjp(dense_fwd, dense_bwd)


def mlp_bad_dense(params, x):
    (w1, b1), (w2, b2), (w3, b3) = params
    h = jnp.tanh(dense(x, w1, b1))
    h = jnp.tanh(h @ w2 + b2)
    return h @ w3 + b3
