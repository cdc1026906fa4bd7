"""Known observation processing for the dynamics model: ``obs (..., obs_dim) -> (..., d)``.

The ensemble reads ``[obs_process_fn(obs), action]`` and still predicts the change of the whole
observation, so a planner, a reward or a termination function sees every dimension. Dropping a
dimension the dynamics do not depend on keeps the model from extrapolating in it: a state whose
other dimensions the data covers is then covered too, wherever along the dropped one it lies.
"""
import torch as th


def drop_cart_position(obs: th.Tensor) -> th.Tensor:
    """
    InvertedPendulum-v4 (obs = [x, theta, x_dot, theta_dot]): ``[theta, x_dot, theta_dot]``. The
    cart's motion is the same anywhere on its rail (only the dead stop at ``|x| = 1`` differs), so
    the model need not learn it at every position. With the position as an input, PETS' planned
    episodes ended with the cart at ``|x|`` 0.82-1.01, where the data was thin and the model's
    one-step error in the velocities 10-100 times its error elsewhere (README, PETS).
    """
    return obs[..., 1:]
