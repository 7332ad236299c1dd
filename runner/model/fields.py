"""A field's value at the moment it is used: its templates rendered, checked, and any error located.

The compiler checks every literal value; a value that comes from a template
can only be checked once it is rendered.  Whoever uses such a field renders it
here, so that a value the field does not take is a `FieldError` whose text
names the file, line and column where the field is written
(`workflow.yml:3:10: timeout: "soon" is not a duration`), never a crash.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any, Callable, Mapping

from runner.expr.templates import Template, TemplateError, render_value, templates_in, to_text
from runner.model import checks
from runner.model.checks import FieldError
from runner.model.durations import parse_duration
from runner.model.workflow import Resources, Retry


def render(value: Any, scope: Mapping[str, Any], name: str) -> Any:
    """`value` with its templates rendered in `scope`."""
    try:
        return render_value(value, scope)
    except TemplateError as e:
        raise FieldError(failed(value, e, name)) from None


def failed(value: Any, error: TemplateError, name: str) -> str:
    """What rendering `value`, the field `name`, failed with, placed where the failing template is written."""
    return located(_at(value, error.key), error.of(name))


def _at(value: Any, key: tuple) -> Any:
    """What stands at `key` in `value` (where rendering a mapping failed), as deep as it goes."""
    for k in key:
        if not isinstance(value, Mapping) or k not in value:
            break
        value = value[k]
    return value


def duration(value: Any, scope: Mapping[str, Any], name: str = "timeout", zero: bool = False) -> float | None:
    """Seconds (more than 0 unless `zero` may be), or None for a field that is not set."""
    rendered = render(value, scope, name)
    if rendered is None:
        return None
    try:
        seconds = parse_duration(rendered)
    except ValueError:
        shown = json.dumps(rendered if isinstance(rendered, str) else to_text(rendered))
        raise FieldError(located(value, f"{name}: {shown} is not a duration")) from None
    if seconds <= 0 and not zero:
        raise FieldError(located(value, f"{name}: must be more than 0"))
    return seconds


def count(value: Any, scope: Mapping[str, Any], name: str) -> int | None:
    """A whole number above 0, or None for a field that is not set."""
    rendered = render(value, scope, name)
    if rendered is None:
        return None
    text = to_text(rendered).strip()
    if isinstance(rendered, bool) or not text.isdigit() or int(text) < 1:
        raise FieldError(located(value, f"{name}: {json.dumps(text)} is not a whole number above 0"))
    return int(text)


def factor(value: Any, scope: Mapping[str, Any], name: str) -> float:
    """A number of at least 1."""
    rendered = render(value, scope, name)
    text = to_text(rendered).strip()
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if isinstance(rendered, bool) or not number >= 1 or math.isinf(number):
        raise FieldError(located(value, f"{name}: {json.dumps(text)} is not a number of at least 1"))
    return number


def retry(policy: Retry, scope: Mapping[str, Any]) -> Retry:
    """The retry policy with its templates rendered (most have none, and are returned as they are)."""
    attempts, delay, factor_, most = policy.attempts, policy.delay, policy.backoff_factor, policy.max_delay
    if not any(isinstance(v, Template) for v in (attempts, delay, factor_, most)):
        return policy
    return replace(
        policy,
        attempts=count(attempts, scope, "retry.attempts"),
        delay=duration(delay, scope, "retry.delay", zero=True),
        backoff_factor=factor(factor_, scope, "retry.backoff_factor"),
        max_delay=duration(most, scope, "retry.max_delay", zero=True),
    )


def resources(limits: Resources, scope: Mapping[str, Any]) -> Resources:
    """The container's limits with their templates rendered (most have none, and are returned as they are)."""
    if not any(isinstance(v, Template) for v in (limits.cpus, limits.memory, limits.pids)):
        return limits
    return Resources(
        cpus=checked(limits.cpus, scope, "resources.cpus", checks.cpus),
        memory=checked(limits.memory, scope, "resources.memory", checks.memory),
        pids=checked(limits.pids, scope, "resources.pids", checks.pids),
    )


def checked(value: Any, scope: Mapping[str, Any], name: str, check: Callable[[Any], Any]) -> Any:
    """`value` rendered and passed through one of `checks`' functions; None (not set) stays None."""
    rendered = render(value, scope, name)
    if rendered is None:
        return None
    try:
        return check(rendered)
    except FieldError as e:
        raise FieldError(located(value, f"{name}: {e}")) from None


def truth(value: Any, scope: Mapping[str, Any], name: str) -> bool:
    return bool(render(value, scope, name))


def text_mapping(value: Mapping[str, Any], scope: Mapping[str, Any], name: str) -> dict[str, str]:
    """An `env:`-like mapping, each value rendered to text."""
    return {k: to_text(render(v, scope, f"{name}.{k}")) for k, v in value.items()}


def located(value: Any, message: str) -> str:
    """`message` after where `value` (or the first template in it) is written, when that is known."""
    where = value.location if isinstance(value, Template) else next(
        (t.location for t in templates_in(value) if t.location is not None), None
    )
    return f"{where}: {message}" if where is not None else message
