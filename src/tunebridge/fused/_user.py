"""Fusing a user's own LightningModule (opt-in): its hooks vmapped over the members' stacked parameters.

A module opts in with two methods that Lightning's ``training_step`` / ``validation_step`` can share:

- ``fused_loss(self, batch) -> Tensor``: the scalar training loss of one batch;
- ``fused_metrics(self, batch) -> dict[str, Tensor]``: the scalar validation metrics of one batch
  (what ``validation_step`` logs: ``self.log`` cannot run under ``vmap``).

Members of one cohort run through one module (the first member's) with their own parameters and
buffers (``torch.func.functional_call`` under ``vmap``), so everything else about them must be equal:
their configs may differ only in the keys the module lists in ``fused_varies`` (default: ``lr``,
``momentum``, ``weight_decay``, ``optimizer`` — values a module uses in ``configure_optimizers`` only),
and each member's optimizer is read from its own ``configure_optimizers()`` (SGD, RMSprop, Adam or AdamW
with torch's default betas, eps and flags, one parameter group, no LR scheduler). Members share each
epoch's batches, drawn once from the first member's ``train_dataloader()``: a member's curve equals its
unfused run when the loader's order does not depend on the trial (give the loader a seeded generator).
Validation metrics are averaged over batches weighted by batch size, as ``self.log`` does. A member that goes
on from a resume point trains beside members at its own epoch only, on the loader's state of its point (its
datamodule's ``state_dict()``, which the built-in datamodules fill with their order's generator).

What cannot be fused is refused with the reason (:class:`~tunebridge.fused.NotFusableError`), never
trained otherwise: missing hooks, an optimizer or scheduler without a fused form, or a hook that ``vmap``
cannot run (Python control flow on a tensor's value, ``.item()``, an in-place update of a tensor that is
not a parameter or buffer); a probe runs both hooks on one validation batch before any training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from tunebridge.fused._cohort import Member
from tunebridge.fused._vmap import StackedCohort, architecture
from tunebridge.lightning import TrainingConfig

__all__ = ["FUSED_VARIES", "UserCohort", "UserMember", "check_user_module", "is_user_module", "user_key"]

#: Config keys that may differ inside one cohort unless the module says otherwise (``fused_varies``).
FUSED_VARIES = ("lr", "momentum", "weight_decay", "optimizer")
_HOOKS = ("fused_loss", "fused_metrics")


def is_user_module(module: Any) -> bool:
    """Whether ``module`` opts in to fusion (defines both hooks)."""
    return all(callable(getattr(module, hook, None)) for hook in _HOOKS)


def _refuse(module: Any, why: str, fix: str) -> Any:
    from tunebridge.fused import NotFusableError

    return NotFusableError(f"fuse: {type(module).__name__} cannot be fused: {why}. {fix}")


def optimizer_config(module: Any) -> TrainingConfig:
    """The member's optimizer, read from its own ``configure_optimizers()``, as fused cohorts run it.

    Raises:
        NotFusableError: Not one SGD/RMSprop/Adam/AdamW over every parameter with torch's defaults, or
            an LR scheduler.
    """
    out = module.configure_optimizers()
    if isinstance(out, Mapping):
        if out.get("lr_scheduler") is not None:
            raise _refuse(
                module,
                "configure_optimizers returns an LR scheduler",
                "Fused cohorts run no scheduler for your module: return the optimizer alone, or drop fuse:.",
            )
        out = out.get("optimizer")
    if not isinstance(out, torch.optim.Optimizer):
        raise _refuse(
            module,
            f"configure_optimizers returns {type(out).__name__}",
            "Return one torch.optim optimizer (SGD, RMSprop, Adam or AdamW), or drop fuse:.",
        )
    groups = out.param_groups
    n_params = sum(1 for _ in module.parameters())
    if len(groups) != 1 or len(groups[0]["params"]) != n_params:
        raise _refuse(
            module,
            "its optimizer has several parameter groups or leaves parameters out",
            "Optimize every parameter in one group, or drop fuse:.",
        )
    g = groups[0]
    expected: dict[str, Any] = {}
    kind = {
        torch.optim.SGD: "sgd",
        torch.optim.RMSprop: "rmsprop",
        torch.optim.Adam: "adam",
        torch.optim.AdamW: "adamw",
    }.get(type(out))
    if kind is None:
        raise _refuse(
            module, f"{type(out).__name__} has no fused form", "Use SGD, RMSprop, Adam or AdamW, or drop fuse:."
        )
    if kind == "sgd":
        expected = {"dampening": 0, "nesterov": False, "maximize": False}
        kind = "momentum" if g["momentum"] else "sgd"
    elif kind == "rmsprop":
        expected = {"alpha": 0.99, "eps": 1e-8, "centered": False, "maximize": False}
    else:
        expected = {"betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False, "maximize": False}
        if kind == "adam":  # Adam(decoupled_weight_decay=True) is AdamW's rule under Adam's name
            expected["decoupled_weight_decay"] = False
    for key, value in expected.items():
        if key in g and (tuple(g[key]) if isinstance(value, tuple) else g[key]) != value:
            raise _refuse(
                module,
                f"its optimizer sets {key}={g[key]!r} (fused: {value!r})",
                f"Keep torch's default {key}, or drop fuse:.",
            )
    lr = g["lr"]
    return TrainingConfig(
        lr=float(lr), optimizer=kind, momentum=float(g.get("momentum", 0.0)), weight_decay=float(g["weight_decay"])
    )


def user_key(member: Member) -> tuple[Any, ...]:
    """What members of one user cohort share: the module class and architecture, and the config minus ``fused_varies``."""
    varies = set(getattr(member.module, "fused_varies", FUSED_VARIES))
    rest = tuple(sorted((k, repr(v)) for k, v in member.config.items() if k not in varies))
    return (type(member.module).__qualname__, architecture(member.module), rest)


@dataclass(frozen=True)
class UserSignature:
    """A user cohort's key (see :func:`user_key`)."""

    key: tuple[Any, ...]


@dataclass
class UserMember(Member):
    """A member whose module is the user's own: its optimizer comes from its ``configure_optimizers``."""

    def __post_init__(self) -> None:
        self.training = optimizer_config(self.module)
        self.shape = None
        self.signature = UserSignature(user_key(self))  # type: ignore[assignment]
        self.generator = torch.Generator()
        self._start_early_stopping()

    def load(self, path: str) -> None:
        """Go on from a resume point: with members at the same epoch only (a cohort's members share its batches)."""
        super().load(path)
        self.signature = UserSignature((*user_key(self), ("epoch", self.epoch)))  # type: ignore[assignment]


class _Hooks(torch.nn.Module):
    """``functional_call`` calls ``forward``: this one calls the wrapped module's hook instead."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: Any, hook: str) -> Any:
        return getattr(self.module, hook)(batch)


def _cast(batch: Any, dtype: torch.dtype, device: torch.device | None = None) -> Any:
    """A batch's tensors (in tuples, lists, dicts) on ``device``, floating-point ones in the cohort's dtype."""
    if isinstance(batch, Tensor):
        return batch.to(device, dtype) if batch.is_floating_point() else batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_cast(b, dtype, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _cast(v, dtype, device) for k, v in batch.items()}
    return batch


def _batch_size(batch: Any) -> int:
    first = batch
    while not isinstance(first, Tensor):
        first = next(iter(first.values())) if isinstance(first, Mapping) else first[0]
    return int(first.shape[0])


def check_user_module(module: Any, datamodule: Any) -> None:
    """Refuse, with the reason, a user module whose hooks ``vmap`` cannot run or whose optimizer has no fused form."""
    optimizer_config(module)
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    hooks = _Hooks(module)
    params, buffers = stack_module_state([module])
    state = {f"module.{k}": v.detach() for k, v in {**params, **buffers}.items()}
    with torch.random.fork_rng(), torch.no_grad():
        for hook in _HOOKS:
            try:
                was = module.training
                module.train(hook == "fused_loss")
                out = vmap(
                    lambda s, b, h=hook: functional_call(hooks, s, (b, h)), in_dims=(0, None), randomness="different"
                )(state, batch)
                module.train(was)
            except Exception as exc:
                raise _refuse(
                    module,
                    f"{hook} cannot run under vmap ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})",
                    "Keep the hook free of Python control flow on tensor values, .item() and in-place updates of plain tensors, or drop fuse:.",
                ) from exc
            if hook == "fused_metrics" and not (isinstance(out, Mapping) and out):
                raise _refuse(
                    module,
                    "fused_metrics must return a dict of scalar metrics",
                    "Return e.g. {'val_loss': loss, 'val_acc': acc}.",
                )


class UserCohort(StackedCohort):
    """Members of one user module class and key, trained with one vmapped step per batch.

    Its epochs go through :func:`~tunebridge.fused._epoch.run_epoch`, as every cohort's do: a step that
    runs out of device memory halves the members training (the others go to ``requeue``).
    """

    def __init__(self, members: list[Member], *, dtype: torch.dtype, device: torch.device | None = None) -> None:
        super().__init__(members, dtype=dtype, device=device)
        self.hooks = _Hooks(self.base)
        for slot, m in enumerate(members):
            self.optimizer.set_member(slot, m.training, m.training.lr)
        self.datamodule = dm = members[0].datamodule
        dm.setup("fit")
        # Resumed members (all at one epoch) go on with the loader's state of their points.
        data = next((m.resumed.get("data") for m in members if m.resumed is not None), None)
        if data and callable(getattr(dm, "load_state_dict", None)):
            dm.load_state_dict(data)
        self._restore_members()
        # Made once and iterated every epoch, as Lightning does: a loader's generator goes on from epoch to epoch.
        self.train_loader, self.val_loader = dm.train_dataloader(), dm.val_dataloader()

    def run(self, hook: str, slots: list[int], batch: Any, *, train: bool) -> Any:
        """The members in ``slots`` through the module's ``hook`` on one batch (their own parameters, vmapped)."""
        return self._vmapped(self.hooks, slots, (batch, hook), train=train, in_dims=(None, None), prefix="module.")

    def train_epoch(self) -> None:
        """One epoch of every member on the shared batches, validation, and each member's decisions."""
        active = [(i, m) for i, m in enumerate(self.slots) if m is not None and not m.done]
        if not active:
            return
        steps = _SharedBatches(self)
        # The loader's batch size: an out-of-memory message names the failing batch's size.
        self._run_epoch(active, steps, batch_size=None)
        self.useful += float(steps.seen * len(active))  # one architecture: no padding
        self.paid += float(steps.seen * len(active))

    def _module(self, member: Member) -> Any:
        return self.hooks.module

    def point_state(self, slot: int, member: Member) -> dict[str, Any]:
        """A member's part (see :class:`StackedCohort`), with the shared training loader's state (its datamodule's)."""
        state = getattr(self.datamodule, "state_dict", None)
        return {**super().point_state(slot, member), "data": state() if callable(state) else {}}


class _SharedBatches:
    """A user cohort's epoch (:class:`~tunebridge.fused._epoch.EpochSteps`): every member on the batches of
    the first member's loaders, its ``fused_loss`` per batch, its ``fused_metrics`` weighted by batch size."""

    def __init__(self, cohort: UserCohort) -> None:
        self.cohort = cohort
        self.batches = iter(cohort.train_loader)
        self.step, self.current = -1, None  # the last batch drawn: a step retried after out of memory reads it again
        self.seen = 0  # samples drawn this epoch

    def batch(self, step: int) -> tuple[Any, int] | None:
        if step != self.step:
            self.current = next(self.batches, None)
            self.step = step
            if self.current is not None:
                self.seen += _batch_size(self.current)
        if self.current is None:
            return None
        batch = _cast(self.current, self.cohort.dtype, self.cohort.device)
        return batch, _batch_size(batch)

    def loss(self, slots: list[int], batch: Any) -> Tensor:
        losses: Tensor = self.cohort.run("fused_loss", slots, batch, train=True)
        return losses

    @torch.no_grad()
    def metrics(self, slots: list[int]) -> dict[str, list[float]]:
        cohort = self.cohort
        totals: dict[str, Tensor] = {}
        count = 0
        for batch in cohort.val_loader:
            batch = _cast(batch, cohort.dtype, cohort.device)
            n = _batch_size(batch)
            for key, value in cohort.run("fused_metrics", slots, batch, train=False).items():
                zero = torch.zeros(len(slots), dtype=torch.float64, device=cohort.device)
                totals[key] = totals.get(key, zero) + value.detach().to(torch.float64) * n
            count += n
        return {key: [v / count for v in total.tolist()] for key, total in totals.items()}  # one read-back per metric

    def keep(self, n: int) -> None:
        pass  # the members share every batch
