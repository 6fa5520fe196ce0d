"""Static checks of a tenant template's syntax tree: what it may reference, call and include.

Run on save (with a clear message per problem, and its line) and again whenever a stored
override is loaded for rendering, so a template written straight into the database is held
to the same rules. The runtime limits of ``template_guard`` back these up.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from jinja2 import Environment, nodes

from return_notify.templating.filters import FILTERS
from return_notify.templating.sandbox import ALLOWED_FILTERS, ALLOWED_METHODS, FORBIDDEN_FILTERS

__all__ = ["CALLABLE_GLOBALS", "static_problems"]

CALLABLE_GLOBALS = frozenset({"range", "dict", "namespace", "cycler", "joiner", "caller",
                              "super", "loop"})
"""Names a template may call besides its own macros."""
_NAMESPACES = frozenset({"html_macros", "text_macros", "self", "loop"})
_PROJECT_FILTERS = frozenset(FILTERS)


@lru_cache(maxsize=4)
def _packaged_names(env: Environment) -> frozenset[str]:
    return frozenset(env.list_templates(extensions=["j2"]))


def _where(node: nodes.Node) -> str:
    return f"line {node.lineno}"


def _template_names(node: nodes.Expr) -> list[nodes.Expr]:
    return list(node.items) if isinstance(node, nodes.List | nodes.Tuple) else [node]


def static_problems(env: Environment, source: str) -> list[str]:
    """Every rule ``source`` breaks, as ``"line N: ..."`` messages (empty when it is fine).

    Raises ``TemplateSyntaxError`` when it does not parse.
    """
    tree = env.parse(source)
    problems: list[str] = []
    defined = {m.name for m in tree.find_all(nodes.Macro)}
    for imp in tree.find_all(nodes.Import):
        defined.add(imp.target)
    for from_imp in tree.find_all(nodes.FromImport):
        defined.update(n if isinstance(n, str) else n[1] for n in from_imp.names)
    callable_names = CALLABLE_GLOBALS | defined
    packaged = _packaged_names(env)

    def add(node: nodes.Node, message: str) -> None:
        text = f"{_where(node)}: {message}"
        if text not in problems:
            problems.append(text)

    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Filter) and node.name is not None:
            if node.name in FORBIDDEN_FILTERS:
                add(node, f"the '{node.name}' filter is not allowed: {FORBIDDEN_FILTERS[node.name]}")
            elif node.name not in ALLOWED_FILTERS and node.name not in _PROJECT_FILTERS:
                add(node, f"unknown filter '{node.name}'")
        elif isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            add(node, f"attribute '{node.attr}' is not allowed (names starting with '_' "
                      "reach Python internals)")
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and \
                isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            add(node, f"key '{node.arg.value}' is not allowed (names starting with '_' "
                      "reach Python internals)")
        elif isinstance(node, nodes.Name) and node.name.startswith("_"):
            add(node, f"name '{node.name}' is not allowed")
        elif isinstance(node, nodes.Name) and node.name == "lipsum":
            add(node, "'lipsum' is not available in templates")
        elif isinstance(node, nodes.Const) and isinstance(node.value, str) and "__" in node.value:
            add(node, "strings containing '__' are not allowed (they name Python internals)")
        elif isinstance(node, nodes.EvalContextModifier):
            add(node, "{% autoescape %} blocks are not allowed (values are always escaped in HTML)")
        elif isinstance(node, nodes.Pow):
            add(node, "the ** operator is not allowed")
        elif isinstance(node, nodes.Mod) and isinstance(node.left, nodes.Const) and \
                isinstance(node.left.value, str):
            add(node, "printf-style % formatting is not allowed (use ~ to join text)")
        elif isinstance(node, nodes.Mul) and any(
                isinstance(side, nodes.Const) and isinstance(side.value, str)
                or isinstance(side, nodes.List | nodes.Tuple) for side in (node.left, node.right)):
            add(node, "repeating strings or lists with * is not allowed")
        elif isinstance(node, nodes.Call):
            _check_call(node, callable_names, add)
        elif isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
            for name in _template_names(node.template):
                if not (isinstance(name, nodes.Const) and name.value in packaged):
                    add(node, "only packaged templates can be extended, included or imported, by "
                              "their exact name (e.g. \"layouts/email.html.j2\")")
    return problems


def _check_call(node: nodes.Call, callable_names: frozenset[str] | set[str],
                add: Callable[[nodes.Node, str], None]) -> None:
    target = node.node
    if isinstance(target, nodes.Name):
        if target.name not in callable_names:
            add(node, f"calling '{target.name}' is not allowed (only macros, range, dict, "
                      "namespace, cycler, joiner, caller and super can be called)")
    elif isinstance(target, nodes.Getattr):
        owner = target.node
        if isinstance(owner, nodes.Name) and (owner.name in _NAMESPACES
                                              or owner.name in callable_names):
            return
        if target.attr not in ALLOWED_METHODS and not target.attr.startswith("_"):
            add(node, f"calling '.{target.attr}()' is not allowed (allowed methods: "
                      f"{', '.join(sorted(ALLOWED_METHODS))}; use filters for the rest)")
    else:
        add(node, "only macros, loop helpers and simple methods can be called")
