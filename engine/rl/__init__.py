"""Meta-reinforcement learning on the 2-D point-robot navigation tasks of Finn et al. 2017 (section 5.3).

Modules, bottom up: :mod:`env` (the task family, batched as tensors), :mod:`policy` (the Gaussian
MLP), :mod:`gradient` (rollouts, the linear feature baseline, the policy-gradient surrogate and the
inner step), :mod:`config`, :mod:`training` (MAML first and second order, Reptile, the pre-trained
baseline), :mod:`evaluation` (returns after 0..3 adaptation steps, one goal's trajectories),
:mod:`store` (safe policy files) and :mod:`make_policies` (the shipped policies in assets/policies/).
Everything runs on the CPU, without gym or MuJoCo.
"""
