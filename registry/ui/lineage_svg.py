"""The lineage graph drawn as inline SVG: one row per version (newest at the top), lanes assigned greedily
as ``git log --graph`` does, so that branches and merges show; each readable node a link.

No ``style`` attribute and no script (the pages' CSP is ``default-src 'self'``): presentation attributes
draw it in the text colour, and CSS may restyle it through its classes (``lineage``, ``edge``, ``node``,
``yanked``, ``external``, ``opaque``, ``truncated``). Every text is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from markupsafe import Markup, escape

from registry.services.lineage import Edge, Lineage, Node
from registry.ui.templating import short_digest, timestamp

ROW = 28  # the height of a row
LANE = 16  # the width of a lane
RADIUS = 5
PAD = 12
CHAR_WIDTH = 7.5  # an estimate of a 12px character's width, for the viewBox
MAX_MESSAGE = 300  # characters of a message in a node's hover text
TRUNCATED = "older versions are not shown"
SVG_NS = "http://www.w3.org/2000/svg"


@dataclass(frozen=True)
class _Layout:
    rows: dict[int, int]  # node id → row
    columns: dict[int, int]  # node id → lane
    lanes: dict[Edge, int]  # the lane an edge runs down, between its child's row and its parent's
    width: int  # lanes used


def draw(lineage: Lineage, href: Callable[[Node], str | None]) -> Markup:
    """``lineage`` as an ``<svg class="lineage">``; ``href`` gives each readable node's link (None: no
    link; it is not asked about opaque nodes). Nodes of ``lineage.repo`` carry ``data-version="N"``."""
    layout = _layout(lineage)
    text_x = PAD + layout.width * LANE + PAD // 2
    labels = {node.id: _label(node, lineage.repo) for node in lineage.nodes}
    longest = max((len(label) for label in labels.values()), default=0)
    if lineage.truncated:
        longest = max(longest, len(TRUNCATED))
    width = int(text_x + longest * CHAR_WIDTH + PAD)
    height = ROW * (len(lineage.nodes) + (1 if lineage.truncated else 0)) + PAD
    edges = (_edge(edge, layout) for edge in lineage.edges)
    nodes = (
        _node(node, lineage.repo, labels[node.id], href(node) if node.readable else None, layout, text_x)
        for node in lineage.nodes
    )
    parts = [
        _element(
            "g", {"class": "edges", "fill": "none", "stroke": "currentColor", "stroke-width": "1.5"}, edges
        ),
        _element("g", {"class": "nodes", "font-size": "12", "fill": "currentColor"}, nodes),
    ]
    if lineage.truncated:
        below = {"class": "truncated", "x": PAD, "y": f"{_y(len(lineage.nodes)):g}", "font-size": "12"}
        parts.append(
            _element("text", {**below, "fill": "currentColor", "dominant-baseline": "central"}, [TRUNCATED])
        )
    return _element(
        "svg",
        {
            "xmlns": SVG_NS,
            "class": "lineage",
            "role": "img",
            "aria-label": f"Lineage of {lineage.repo}: {len(lineage.nodes)} versions",
            "viewBox": f"0 0 {width} {height}",
            "width": width,
            "height": height,
        },
        parts,
    )


def _layout(lineage: Lineage) -> _Layout:
    """Lanes as ``git log --graph`` assigns them: a node takes the lane its first child reserved for it
    (else the leftmost free one), then reserves its own lane for its first parent and a free lane for
    each other parent, unless a lane already leads to that parent."""
    rows = {node.id: row for row, node in enumerate(lineage.nodes)}
    parents: dict[int, list[Edge]] = {}
    for edge in sorted(lineage.edges, key=lambda edge: edge.position):
        parents.setdefault(edge.child_id, []).append(edge)
    lanes: list[int | None] = []  # the parent each lane leads to
    columns: dict[int, int] = {}
    edge_lanes: dict[Edge, int] = {}
    width = 1
    for node in lineage.nodes:
        reserved = [lane for lane, target in enumerate(lanes) if target == node.id]
        column = reserved[0] if reserved else _free(lanes)
        for lane in reserved:
            lanes[lane] = None
        columns[node.id] = column
        for edge in parents.get(node.id, []):
            if rows[edge.parent_id] <= rows[node.id]:
                continue  # not below its child (a graph not in the service's order): drawn straight
            if edge.parent_id in lanes:
                lane = lanes.index(edge.parent_id)
            else:
                lane = column if lanes[column] is None else _free(lanes)
                lanes[lane] = edge.parent_id
            edge_lanes[edge] = lane
        width = max(width, len(lanes))
        while lanes and lanes[-1] is None:
            lanes.pop()
    return _Layout(rows=rows, columns=columns, lanes=edge_lanes, width=width)


def _free(lanes: list[int | None]) -> int:
    """The leftmost free lane (a new one at the right when none is)."""
    if None in lanes:
        return lanes.index(None)
    lanes.append(None)
    return len(lanes) - 1


def _x(lane: int) -> float:
    return PAD + lane * LANE + LANE / 2


def _y(row: int) -> float:
    return PAD / 2 + row * ROW + ROW / 2


def _edge(edge: Edge, layout: _Layout) -> Markup:
    """A path from the child's circle down its lane to the parent's circle, curving between lanes."""
    x1, y1 = _x(layout.columns[edge.child_id]), _y(layout.rows[edge.child_id])
    x2, y2 = _x(layout.columns[edge.parent_id]), _y(layout.rows[edge.parent_id])
    lane = layout.lanes.get(edge)
    if lane is None:
        d = f"M{x1:g} {y1:g}L{x2:g} {y2:g}"
    else:
        xl, quarter = _x(lane), ROW / 4
        d = f"M{x1:g} {y1:g}"
        if xl != x1:  # over to the lane in the first half row
            d += f"C{x1:g} {y1 + quarter:g} {xl:g} {y1 + quarter:g} {xl:g} {y1 + 2 * quarter:g}"
        if xl != x2:  # down the lane, then over to the parent in the last half row
            d += f"L{xl:g} {y2 - 2 * quarter:g}C{xl:g} {y2 - quarter:g} {x2:g} {y2 - quarter:g} {x2:g} {y2:g}"
        else:
            d += f"L{x2:g} {y2:g}"
    classes = "edge" if edge.position == 0 else "edge merge"
    return _element("path", {"class": classes, "d": d}, [])


def _node(node: Node, repo: str, label: str, link: str | None, layout: _Layout, text_x: float) -> Markup:
    cx, cy = _x(layout.columns[node.id]), _y(layout.rows[node.id])
    classes = ["node"]
    circle: dict[str, object] = {"cx": f"{cx:g}", "cy": f"{cy:g}", "r": RADIUS}
    if node.yanked:
        classes.append("yanked")
        circle.update({"fill": "none", "stroke": "currentColor", "stroke-width": "1.5"})
    if node.repo != repo:
        classes.append("external")
        circle["fill-opacity"] = "0.55"
    if not node.readable:
        classes.append("opaque")
        circle.update({"fill": "none", "stroke": "currentColor", "stroke-dasharray": "2 2"})
    content = [
        _element("title", {}, [_hover(node)]),
        _element("circle", circle, []),
        _element("text", {"x": f"{text_x:g}", "y": f"{cy:g}", "dominant-baseline": "central"}, [label]),
    ]
    attributes: dict[str, object] = {"class": " ".join(classes)}
    if node.repo == repo:
        attributes["data-version"] = node.number
    if node.kind is not None:
        attributes["data-kind"] = node.kind
    if link is not None:
        content = [_element("a", {"href": link}, content)]
    return _element("g", attributes, content)


def _label(node: Node, repo: str) -> str:
    """``#N`` and its first tag in the drawn repository; ``ns/name#N`` elsewhere; a digest if opaque."""
    if not node.readable:
        return short_digest(node.digest)
    if node.repo != repo:
        return f"{node.repo}#{node.number}"
    return f"#{node.number} {node.tags[0]}" if node.tags else f"#{node.number}"


def _hover(node: Node) -> str:
    """A node's ``<title>``: what a pointer over it shows."""
    if not node.readable:
        return f"sha256:{node.digest}\n(in a repository you cannot read)"
    lines = [f"{node.repo}#{node.number}" + (" (yanked)" if node.yanked else ""), f"sha256:{node.digest}"]
    if node.tags:
        lines.append("tags: " + ", ".join(node.tags))
    if node.kind is not None:
        lines.append(f"made by a {node.kind} job")
    lines.append(timestamp(node.created_at))
    if node.message:
        message = node.message.strip()
        lines.append(message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…")
    return "\n".join(lines)


def _element(tag: str, attributes: dict[str, object], children: Iterable[Markup | str]) -> Markup:
    """``<tag …>children</tag>`` (``<tag …/>`` when empty), every attribute value and text escaped."""
    opened = tag + "".join(f' {name}="{escape(value)}"' for name, value in attributes.items())
    inner = Markup("").join(escape(child) for child in children)
    # The tag and attribute names are this module's; every value and text was escaped.
    return Markup(f"<{opened}>{inner}</{tag}>" if inner else f"<{opened}/>")
