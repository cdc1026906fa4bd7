"""Known observation processing for the dynamics model: ``obs (..., obs_dim) -> (..., d)``.

The ensemble reads ``[obs_process_fn(obs), action]`` and still predicts the change of the whole
observation, so a planner, a reward or a termination function sees every dimension. Dropping a
dimension the dynamics do not depend on keeps the model from extrapolating in it: a state whose
other dimensions the data covers is then covered too, wherever along the dropped one it lies.
"""
import torch as th

from sb3_mbrl.envs.terminations import INVERTED_PENDULUM_RAIL


def drop_cart_position(obs: th.Tensor) -> th.Tensor:
    """
    InvertedPendulum-v4 (obs = [x, theta, x_dot, theta_dot]): ``[theta, x_dot, theta_dot]``. The
    cart's motion is the same anywhere on its rail (only the dead stop at ``|x| = 1`` differs), so
    the model need not learn it at every position. With the position as an input, PETS' planned
    episodes ended with the cart at ``|x|`` 0.82-1.01, where the data was thin and the model's
    one-step error in the velocities 10-100 times its error elsewhere (README, PETS).
    """
    return obs[..., 1:]


# How far before the rail's end the contact input starts to rise: the cart reaches the end at up to
# about 1.7 m/s, 0.07 m per 0.04 s step, so the model sees the approach a step or two ahead.
RAIL_CONTACT_ZONE = 0.1


def cart_rail_contact(obs: th.Tensor) -> th.Tensor:
    """
    InvertedPendulum-v4 (obs = [x, theta, x_dot, theta_dot]): ``[theta, x_dot, theta_dot, contact]``
    with ``contact = sign(x) * max(|x| - 0.9, 0) / 0.1``: zero on the rail's inner 1.8 m and rising
    to 1 at its end (``|x| = 1``, the slider's range). It is :func:`drop_cart_position` plus what that
    one cannot know: whether the cart is at the stop at the end of the rail. Without it the stop
    cannot be told from the other inputs and the model averages it into the velocities everywhere:
    in PETS one episode that reached the end raised the holdout MSE from about 1e-5 to 4e-3..5e-3,
    and on random states the error in x_dot away from the rail was 0.151 against 0.060 with this
    input (``tests/test_model_inputs.py``). With it, PETS seeds 0 and 1 balanced for 1,000 steps
    where their episodes had ended at the rail after 340 and 518. On the inner 1.8 m the input is
    zero at every position, so the model does not extrapolate along the rail (README, PETS).
    """
    x = obs[..., :1]
    zone_start = INVERTED_PENDULUM_RAIL - RAIL_CONTACT_ZONE
    contact = (x.abs() - zone_start).clamp_min(0.0) / RAIL_CONTACT_ZONE * x.sign()
    return th.cat([drop_cart_position(obs), contact], dim=-1)
