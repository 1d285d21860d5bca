"""The lineage graph's SVG, parsed back: a node per version, an edge per parent link running from the
child's circle to the parent's without crossing another node, links, classes, and nothing a hostile
message could turn into markup."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from registry.services.lineage import Edge, Lineage, Node
from registry.ui.lineage_svg import draw

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & </title><a href="javascript:1">'
OPAQUE_DIGEST = "ef" * 32
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def version(id: int, repo: str, number: int, **fields: object) -> Node:
    values: dict = {"yanked": False, "tags": (), "kind": None, "message": None, **fields}
    return Node(
        id=id, repo=repo, number=number, digest=f"{id:064x}", created_at=WHEN, readable=True, **values
    )


# acme/bot: #4 merges #3 and #2 (a branch off #1); #1 was made from pub/base#7 and a version the viewer
# may not read.
NODES = (
    version(6, "acme/bot", 4, tags=("latest", "prod"), kind="merge", message=HOSTILE),
    version(5, "acme/bot", 3),
    version(4, "acme/bot", 2, yanked=True),
    version(3, "acme/bot", 1),
    version(2, "pub/base", 7),
    Node(1, None, None, OPAQUE_DIGEST, None, False, (), None, None, readable=False),
)
EDGES = (Edge(6, 5, 0), Edge(6, 4, 1), Edge(5, 3, 0), Edge(4, 3, 0), Edge(3, 2, 0), Edge(3, 1, 1))
GRAPH = Lineage(repo="acme/bot", nodes=NODES, edges=EDGES, truncated=False)


def href(node: Node) -> str:
    return f'/{node.repo}/v/{node.number}?q="<>'


def drawn(graph: Lineage = GRAPH) -> tuple[str, ET.Element]:
    markup = str(draw(graph, href))
    return markup, ET.fromstring(markup)


def nodes_of(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if "node" in g.get("class", "").split()]


def center(node: ET.Element) -> tuple[float, float]:
    circle = next(node.iter(f"{SVG}circle"))
    return float(circle.get("cx", "")), float(circle.get("cy", ""))


def points(d: str) -> list[tuple[str, tuple[float, float]]]:
    """Each command of a path of M, L and C commands, with the point it ends at."""
    found = []
    for command, numbers in re.findall(r"([MLC])([^MLC]*)", d):
        values = [float(v) for v in numbers.split()]
        found.append((command, (values[-2], values[-1])))
    return found


def test_the_svg_is_an_image_with_a_node_per_version() -> None:
    _, svg = drawn()
    assert svg.tag == f"{SVG}svg" and svg.get("class") == "lineage" and svg.get("role") == "img"
    assert "acme/bot" in svg.get("aria-label", "") and len(svg.get("viewBox", "").split()) == 4
    nodes = nodes_of(svg)
    assert len(nodes) == len(NODES)
    assert [n.get("data-version") for n in nodes] == ["4", "3", "2", "1", None, None]
    labels = ["".join(n.find(f".//{SVG}text").itertext()) for n in nodes]  # type: ignore[union-attr]
    assert labels == ["#4 latest", "#3", "#2", "#1", "pub/base#7", OPAQUE_DIGEST[:12]]
    assert [n.get("class") for n in nodes] == [
        "node",
        "node",
        "node yanked",
        "node",
        "node external",
        "node external opaque",
    ]
    assert nodes[0].get("data-kind") == "merge"


def test_readable_nodes_are_links_and_the_opaque_one_is_not() -> None:
    _, svg = drawn()
    links = [[a.get("href") for a in node.iter(f"{SVG}a")] for node in nodes_of(svg)]
    assert links[:5] == [[href(node)] for node in NODES[:5]]
    assert links[5] == []
    opaque_title = "".join(nodes_of(svg)[5].find(f".//{SVG}title").itertext())  # type: ignore[union-attr]
    assert opaque_title.startswith(f"sha256:{OPAQUE_DIGEST}")


def test_every_edge_runs_from_its_child_to_its_parent_and_around_other_nodes() -> None:
    _, svg = drawn()
    centers = {node.id: center(element) for node, element in zip(NODES, nodes_of(svg), strict=True)}
    paths = [p for p in svg.iter(f"{SVG}path") if "edge" in p.get("class", "").split()]
    assert len(paths) == len(EDGES)
    for edge, path in zip(EDGES, paths, strict=True):
        steps = points(path.get("d", ""))
        assert steps[0] == ("M", centers[edge.child_id]) and steps[-1][1] == centers[edge.parent_id]
        for (_, start), (command, end) in itertools.pairwise(steps):
            if command != "L":
                continue
            for other, (x, y) in centers.items():
                inside = min(start[1], end[1]) < y < max(start[1], end[1])
                on_line = start[0] == end[0] == x
                assert not (inside and on_line), f"{edge} runs through node {other}"
    assert centers[5][0] != centers[4][0]  # the branch (#3 and #2, both off #1) takes two lanes
    assert centers[6][0] == centers[5][0] == centers[3][0]  # the first parents' line is straight


def test_text_is_escaped_and_there_is_no_style_or_script() -> None:
    markup, svg = drawn()
    title = "".join(nodes_of(svg)[0].find(f".//{SVG}title").itertext())  # type: ignore[union-attr]
    assert HOSTILE in title and "merge" in title and "latest, prod" in title
    assert "<script" not in markup and "style=" not in markup
    assert not list(svg.iter(f"{SVG}script"))
    assert all("style" not in element.attrib for element in svg.iter())


def test_a_truncated_graph_says_so() -> None:
    _, svg = drawn(Lineage(repo="acme/bot", nodes=NODES[1:2], edges=(), truncated=True))
    (note,) = [t for t in svg.iter(f"{SVG}text") if t.get("class") == "truncated"]
    assert "older versions" in (note.text or "")
    assert len(nodes_of(svg)) == 1
    _, whole = drawn()
    assert not [t for t in whole.iter(f"{SVG}text") if t.get("class") == "truncated"]
