"""Config tests: every option of every group composes and instantiates; bad names are rejected clearly."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from algd.build import instantiate as build
from algd.errors import ConfigError
from algd.launch.argv import rewrite_argv
from algd.launch.config import CONFIG_DIR, GROUPS, config_options


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=["paths.output_dir=/tmp/algd-unused", *rewrite_argv(list(overrides))],
            return_hydra_config=False,
        )


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_instantiates(group):
    options = config_options(group)
    assert options, f"no options in configs/{group}"
    for option in options:
        cfg = compose_cfg(f"{group}={option}")
        factory = instantiate(cfg.env, _convert_="all")
        assert factory.info.episode_length > 0 and factory.info.cost_limit >= 0
        actor = build(cfg.actor)(obs_dim=4, act_dim=2, action_low=-torch.ones(2), action_high=torch.ones(2))
        assert actor.act(torch.zeros(3, 4)).shape == (3, 2)
        energy = instantiate(cfg.energy)
        assert energy(torch.zeros(3, 1), torch.zeros(3, 1) - 0.5, torch.tensor(1.0)).shape == (3, 1)
        mult = instantiate(cfg.multiplier)
        assert mult.lam.item() > 0
        params = list(mult.parameters())
        mult.update(torch.ones(3, 1), instantiate(cfg.optim)(params=params) if params else None)
        opt = instantiate(cfg.optim)(params=list(actor.parameters()))
        assert isinstance(opt, torch.optim.Optimizer)


def test_protocols_set_episode_length_and_limit():
    paper = instantiate(compose_cfg("env=PointButton", "protocol=paper").env)
    standard = instantiate(compose_cfg("env=PointButton", "protocol=standard").env)
    assert (paper.info.episode_length, paper.info.cost_limit, paper.fixed_layout) == (400, 10.0, True)
    assert (standard.info.episode_length, standard.info.cost_limit, standard.fixed_layout) == (1000, 25.0, False)
    assert paper.id == "SafetyPointButton1-v0"


def test_experiment_presets():
    sac_lag = compose_cfg("experiment=sac_lag")
    assert (sac_lag.actor.name, sac_lag.energy._target_.split(".")[-1], sac_lag.ensemble, sac_lag.k) == (
        "gaussian",
        "LagrangianEnergy",
        1,
        0.0,
    )
    cal = compose_cfg("experiment=cal")
    assert (cal.actor.name, cal.energy._target_.split(".")[-1], cal.ensemble, cal.k) == (
        "gaussian",
        "AugmentedLagrangianEnergy",
        4,
        1.0,
    )


def test_full_safety_gym_id_is_accepted():
    cfg = compose_cfg("env=SafetyCarPush2-v0")
    assert cfg.env.id == "SafetyCarPush2-v0" and cfg.env.name == "SafetyCarPush2-v0"


@pytest.mark.parametrize(
    "arg, message",
    [
        (
            "env=NoSuchTask",
            "valid env names: Ant, CarButton, CarButton2, CarGoal, HalfCheetah, Hopper, Humanoid, PointButton",
        ),
        ("actor=transformer", "valid actor names: diffusion, diffusion_ve, gaussian"),
        ("energy=quadratic", "valid energy names: augmented, lagrangian"),
        ("env=PointButton,Nope", "unknown env 'Nope'"),
        ("multiplier=log_adam,adamw", "valid multiplier names: alm, log_adam, pid"),
        ("env=toy,SafetyCarPush2-v0", "sweep them as env=safety_gym env.id="),
    ],
)
def test_unknown_names_are_rejected(arg, message):
    with pytest.raises(ConfigError, match=message):
        rewrite_argv([arg])


def test_schema_names_only_constructor_arguments_of_its_targets():
    """Every rule of the config schema (algd.schema) is about an argument its target's constructor takes, so a
    renamed argument cannot leave a rule silently checking nothing."""
    import inspect

    from hydra.utils import get_class

    from algd.schema import SCHEMAS

    for target, schema in SCHEMAS.items():
        cls = get_class(target)
        params = set()
        for klass in cls.__mro__:  # arguments passed on to a base class through **kwargs count too
            if "__init__" in vars(klass):
                params |= set(inspect.signature(klass.__init__).parameters)
        missing = set(schema.rules) - params
        assert not missing, f"{target}: schema rules for {sorted(missing)}, which its constructor does not take"
