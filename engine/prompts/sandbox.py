"""The Jinja2 sandbox templates render in, bounded in time and memory.

jinja2's `SandboxedEnvironment` keeps a template away from Python internals but not from
work: nested loops never end and `{{ "x" * 10**15 }}` asks for a petabyte. This sandbox
checks the size of every `*`, `**` and `+` result before computing it, caps `range`, counts
loop iterations, and stops a render that runs past a wall-clock limit, each with a
`TemplateLimitError` naming the limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from jinja2 import nodes

MAX_RENDER_CHARS = 1_000_000
"""The longest text (or list) a template may produce or build; prompts are far shorter."""
MAX_INT_BITS = 100_000
"""The largest integer a template may compute (about 30,000 digits)."""
MAX_RANGE = 100_000
"""The most items one `range(...)` may have."""
MAX_LOOP_ITERATIONS = 1_000_000
"""Loop iterations, all loops together, in one render."""
RENDER_SECONDS = 2.0
"""Wall-clock time one render may take."""
LOOP_GUARD = "__tunelab_loop_guard__"
"""The global every `{% for %}` iterable is wrapped in (added to the parsed template)."""
CONCAT_GUARD = "__tunelab_concat_guard__"
"""The global every `~` concatenation becomes, so its length is checked before joining."""


class TemplateLimitError(BadInputError):
    """A template that would take too long or too much memory to render."""


class _Budget(threading.local):
    """What the render running on this thread has left (the TUI renders in worker threads)."""

    deadline: float = float("inf")
    iterations: int = 0


_budget = _Budget()


def start_render() -> None:
    """Reset the budget for one render on this thread."""
    _budget.deadline = time.monotonic() + RENDER_SECONDS
    _budget.iterations = 0


def _limit(what: str) -> TemplateLimitError:
    return TemplateLimitError(f"template stopped: {what}; simplify the template")


def _check_time() -> None:
    if time.monotonic() > _budget.deadline:
        raise _limit(f"rendering took longer than the limit of {RENDER_SECONDS:g} s")


def _guard_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _budget.iterations += 1
        if _budget.iterations > MAX_LOOP_ITERATIONS:
            raise _limit(f"loops ran more than the limit of {MAX_LOOP_ITERATIONS:,} iterations")
        if _budget.iterations % 512 == 0:
            _check_time()
        yield item


def _bounded_range(*args: int) -> range:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise _limit(f"range of {len(values):,} items is over the limit of {MAX_RANGE:,}")
    return values


def _sized(value: Any) -> int | None:
    """The length of something `*` would repeat, or None when it is not a sequence."""
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse a result over the size limits before Python tries to build it."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            size = _sized(seq)
            if size is not None and _is_int(count) and size * count > MAX_RENDER_CHARS:
                raise _limit(
                    f"repeating {size:,} characters or items {count:,} times is over the limit "
                    f"of {MAX_RENDER_CHARS:,}"
                )
        if (
            _is_int(left)
            and _is_int(right)
            and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS
        ):
            raise _limit(f"a product over the limit of {MAX_INT_BITS:,} bits")
    elif operator == "**":
        big = _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1
        if big and right * abs(left).bit_length() > MAX_INT_BITS:
            raise _limit(f"a power over the limit of {MAX_INT_BITS:,} bits")
    elif operator == "+":
        left_size, right_size = _sized(left), _sized(right)
        if (
            left_size is not None
            and right_size is not None
            and left_size + right_size > MAX_RENDER_CHARS
        ):
            raise _limit(f"text over the limit of {MAX_RENDER_CHARS:,} characters")


def _guard_concat(*parts: Any) -> str:
    texts = [str(part) for part in parts]
    if sum(map(len, texts)) > MAX_RENDER_CHARS:
        raise _limit(f"text over the limit of {MAX_RENDER_CHARS:,} characters")
    return "".join(texts)


def _check_size(value: Any) -> None:
    """Refuse a value a template built (a namespace attribute, a method's result) that is over
    the size limit, so it cannot double its way to all the memory in a loop."""
    size = len(value) if isinstance(value, str | bytes | list | tuple | dict | set) else None
    if size is not None and size > MAX_RENDER_CHARS:
        raise _limit(
            f"a value of {size:,} characters or items, over the limit of {MAX_RENDER_CHARS:,}"
        )


def _bounded_width(filter_function: Any) -> Any:
    """A padding filter (`center`, `indent`) whose width cannot exceed the output limit."""

    def bounded(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if _is_int(width) and width > MAX_RENDER_CHARS:
            raise _limit(f"a width of {width:,} is over the limit of {MAX_RENDER_CHARS:,}")
        return filter_function(value, width, *args, **kwargs)

    return bounded


def guard_loops(ast: nodes.Template) -> nodes.Template:
    """Wrap every `{% for %}` iterable in the loop guard, so loops count against the budget,
    and turn every `~` into a length-checked join."""
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer

    class Guard(NodeTransformer):
        def visit_For(self, node: nodes.For) -> nodes.Node:
            self.generic_visit(node)
            call = nodes.Call(nodes.Name(LOOP_GUARD, "load"), [node.iter], [], None, None)
            node.iter = call.set_lineno(node.lineno)
            return node

        def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
            self.generic_visit(node)
            call = nodes.Call(nodes.Name(CONCAT_GUARD, "load"), list(node.nodes), [], None, None)
            return call.set_lineno(node.lineno)

    guarded = Guard().visit(ast)
    assert isinstance(guarded, nodes.Template)
    return guarded


def check_output(text: str) -> str:
    """The rendered text, or a limit error when it is longer than any prompt should be."""
    if len(text) > MAX_RENDER_CHARS:
        raise _limit(
            f"the rendered text is {len(text):,} characters, over the limit of {MAX_RENDER_CHARS:,}"
        )
    return text


def bounded_environment() -> Any:
    """A strict-undefined `SandboxedEnvironment` with the limits above."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment
    from jinja2.utils import Namespace

    class BoundedNamespace(Namespace):
        def __setitem__(self, name: str, value: Any) -> None:
            _check_size(value)
            super().__setitem__(name, value)

    class BoundedSandbox(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_time()
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            # Every call (macros, methods, `loop(...)`) is a place a runaway render can stop.
            _check_time()
            owner = getattr(__obj, "__self__", None)
            if isinstance(owner, str | bytes) and any(
                _is_int(a) and a > MAX_RENDER_CHARS for a in (*args, *kwargs.values())
            ):  # `"x".ljust(10**12)` allocates before any result could be checked
                raise _limit(f"a number over the limit of {MAX_RENDER_CHARS:,} passed to a method")
            result = super().call(__context, __obj, *args, **kwargs)
            _check_size(result)
            if owner is not None:
                _check_size(owner)  # `items.extend(items)` grows the list in place
            return result

    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals["range"] = _bounded_range
    env.globals[LOOP_GUARD] = _guard_loop
    env.globals[CONCAT_GUARD] = _guard_concat
    env.globals["namespace"] = BoundedNamespace
    for name in ("center", "indent"):
        env.filters[name] = _bounded_width(env.filters[name])
    return env
