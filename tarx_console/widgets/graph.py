"""The workflow diagram: nodes as boxes in layers (left to right), edges with their labels in box-drawing lines.

`layout()` is pure (no Textual): grandalf's Sugiyama layout ranks the nodes into layers and orders each layer to
cut crossings; we turn its coordinates into terminal cells, route every edge orthogonally through the gaps
between layers (long edges through grandalf's dummy points) and merge crossing lines into junction characters.
`WorkflowGraph` shows a drawing in a scrolling view, colours each node by its state and moves a selection with
the arrow keys. Lines are cached as strips; a state change re-renders only the rows of that node's box.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from grandalf.graphs import Edge, Graph, Vertex
from grandalf.layouts import SugiyamaLayout
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

MAX_TITLE = 18  # a box is at most this many characters of text wide; longer names end in "…"
LABEL_MAX = 12  # edge labels are cut to this
BLANK, LINE, LABEL, ARROW = -1, -2, -3, -4  # what a cell belongs to when it is not a node's box

U, D, L, R = 1, 2, 4, 8
JUNCTIONS = {
    0: " ", U: "│", D: "│", U | D: "│", L: "─", R: "─", L | R: "─",
    D | R: "┌", D | L: "┐", U | R: "└", U | L: "┘", U | D | R: "├", U | D | L: "┤", D | L | R: "┬",
    U | L | R: "┴", U | D | L | R: "┼",
}
SINGLE = "┌┐└┘─│├"
DOUBLE = "╔╗╚╝═║╟"  # the selected node


@dataclass(frozen=True)
class GraphNode:
    id: str
    type: str = ""
    title: str = ""  # shown in the box; the id when empty


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    label: str = ""


@dataclass
class Box:
    node: str
    index: int
    x: int
    y: int
    w: int
    h: int
    title: str
    subtitle: str
    exit_row: int | None = None  # the row where edges leave on the right, when any do
    extra_right: list[int] = field(default_factory=list)  # rows where back edges leave on the right


@dataclass
class Drawing:
    width: int
    height: int
    chars: list[list[str]]
    owner: list[list[int]]  # BLANK, LINE, LABEL, ARROW or the index of a node in `nodes`
    boxes: dict[str, Box]
    nodes: list[str]
    columns: list[list[str]]  # node ids by layer, top to bottom: keyboard navigation

    def box_at(self, x: int, y: int) -> Box | None:
        if 0 <= y < self.height and 0 <= x < self.width:
            who = self.owner[y][x]
            if who >= 0:
                return self.boxes[self.nodes[who]]
        return None


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


@dataclass
class _Path:
    edge: GraphEdge
    points: list[tuple[int, object]]  # (rank, vertex) from the lower rank to the higher
    reversed: bool  # the edge points from the higher rank to the lower (a cycle being edited)


def layout(nodes: list[GraphNode], edges: list[GraphEdge]) -> Drawing:
    """Place `nodes` in layers and route `edges`; edges naming unknown nodes and self-loops are left out."""
    ids = [n.id for n in nodes]
    index = {nid: i for i, nid in enumerate(ids)}
    vertices = {n.id: Vertex(n.id) for n in nodes}
    seen: set[tuple[str, str]] = set()
    kept: list[GraphEdge] = []
    g_edges: list[Edge] = []
    for e in edges:
        key = (e.source, e.target)
        if e.source == e.target or e.source not in vertices or e.target not in vertices or key in seen:
            continue
        seen.add(key)
        kept.append(e)
        g_edges.append(Edge(vertices[e.source], vertices[e.target], data=e))
    for v in vertices.values():
        v.view = _View()
    graph = Graph(list(vertices.values()), g_edges, directed=True)

    rank: dict[object, int] = {}
    cross: dict[object, float] = {}
    sizes: dict[object, int] = {}
    paths: list[_Path] = []
    component_rows: list[tuple[int, int]] = []  # each component's min and max cross coordinate
    comp_of: dict[object, int] = {}
    for ci, comp in enumerate(graph.C):
        sug = SugiyamaLayout(comp)
        sug.xspace, sug.yspace, sug.dw, sug.dh = 1, 1, 1, 1
        roots = [v for v in comp.sV if len(v.e_in()) == 0] or None
        sug.init_all(roots=roots)
        comp_paths = []
        for e in comp.sE:
            r0, r1 = sug.grx[e.v[0]].rank, sug.grx[e.v[1]].rank
            ctrl = sug.ctrls.get(e, {})
            lo, hi = (e.v[0], e.v[1]) if r0 < r1 else (e.v[1], e.v[0])
            pts = [(min(r0, r1), lo)]
            pts += [(r, ctrl[r]) for r in range(min(r0, r1) + 1, max(r0, r1))]
            pts.append((max(r0, r1), hi))
            comp_paths.append(_Path(e.data, pts, r0 > r1))
        # a box is as tall as its ports need: one exit on the right (forks share it), one entry per edge on the left
        lefts: dict[object, int] = defaultdict(int)
        rights: dict[object, int] = defaultdict(int)
        for p in comp_paths:
            first, last = p.points[0][1], p.points[-1][1]
            lefts[last] += 1
            rights[first] += 1 if p.reversed else 0
        for v in comp.sV:
            has_exit = any(not p.reversed and p.points[0][1] is v for p in comp_paths)
            interior = max(2, lefts[v], rights[v] + (1 if has_exit else 0))
            v.view.w = interior + 2  # grandalf's "width" runs across a layer: our rows
        sug.draw(3)
        for layer in sug.layers:
            for v in layer:
                rank[v] = sug.grx[v].rank
                cross[v] = v.view.xy[0]
                sizes[v] = v.view.w if isinstance(v.view, _View) else 1
                comp_of[v] = ci
        lo = min(cross[v] - sizes[v] / 2 for layer in sug.layers for v in layer)
        hi = max(cross[v] + sizes[v] / 2 for layer in sug.layers for v in layer)
        component_rows.append((int(lo), int(hi)))
        paths += comp_paths

    # rows: round grandalf's coordinates, keep boxes at least one row apart, stack components top to bottom
    top: dict[object, int] = {}
    offset = 0
    by_comp_rank: dict[tuple[int, int], list[object]] = defaultdict(list)
    for v in rank:
        by_comp_rank[(comp_of[v], rank[v])].append(v)
    for ci, (lo, _) in enumerate(component_rows):
        bottom = offset
        for (c, _r), members in by_comp_rank.items():
            if c != ci:
                continue
            members.sort(key=lambda v: cross[v])
            floor = offset
            for v in members:
                t = max(offset + round(cross[v] - sizes[v] / 2 - lo), floor)
                top[v] = t
                floor = t + sizes[v] + 1
                bottom = max(bottom, t + sizes[v])
        offset = bottom + 1

    # boxes and their ports
    boxes: dict[str, Box] = {}
    vertex_of = {v.data: v for v in vertices.values()}
    layers = max(rank.values(), default=-1) + 1
    col_w = [0] * layers
    for n in nodes:
        v = vertex_of[n.id]
        title = _cut(n.title or n.id, MAX_TITLE)
        subtitle = _cut(n.type, MAX_TITLE)
        w = max(len(title), len(subtitle), 6) + 4
        boxes[n.id] = Box(n.id, index[n.id], 0, top[v], w, sizes[v], title, subtitle)
        col_w[rank[v]] = max(col_w[rank[v]], w)
    node_of = {vertex_of[nid]: nid for nid in ids}

    def row_at(p: _Path, i: int) -> int:
        """The row of the path's i-th point, before ports are known: a box's top interior row."""
        v = p.points[i][1]
        return top[v] + (1 if v in node_of else 0)

    # entry ports (left side), ordered by where their edge comes from; exit port (right side) at the top row
    entry: dict[int, int] = {}  # path index -> row it enters its last point
    start: dict[int, int] = {}  # path index -> row it leaves its first point
    incoming: dict[object, list[int]] = defaultdict(list)
    back_out: dict[object, list[int]] = defaultdict(list)
    for pi, p in enumerate(paths):
        incoming[p.points[-1][1]].append(pi)
        if p.reversed:
            back_out[p.points[0][1]].append(pi)
    for v, pis in incoming.items():
        if v not in node_of:
            continue
        pis.sort(key=lambda pi: row_at(paths[pi], -2))
        for k, pi in enumerate(pis):
            entry[pi] = top[v] + 1 + k
    for pi, p in enumerate(paths):
        first = p.points[0][1]
        box = boxes[node_of[first]]
        if not p.reversed:
            box.exit_row = box.y + 1
            start[pi] = box.y + 1
    for v, pis in back_out.items():
        box = boxes[node_of[v]]
        base = box.y + (2 if box.exit_row is not None else 1)
        pis.sort(key=lambda pi: row_at(paths[pi], 1))
        for k, pi in enumerate(pis):
            start[pi] = base + k
            box.extra_right.append(base + k)

    def point_row(pi: int, i: int) -> int:
        p = paths[pi]
        if i == 0:
            return start[pi]
        if i == len(p.points) - 1:
            return entry[pi]
        return top[p.points[i][1]]

    # the gaps between layers: one vertical channel per group of segments leaving the same point
    segs_by_gap: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)  # (y1, y2, path, hop)
    for pi, p in enumerate(paths):
        for i in range(len(p.points) - 1):
            segs_by_gap[p.points[i][0]].append((point_row(pi, i), point_row(pi, i + 1), pi, i))
    channels: dict[tuple[int, int], int] = {}  # (gap, y1) -> channel
    gap_w = [0] * max(0, layers - 1)
    for gap in range(layers - 1):
        groups: dict[int, list[int]] = defaultdict(list)
        label_len = 0
        for y1, y2, pi, hop in segs_by_gap[gap]:
            groups[y1].append(y2)
            if hop == len(paths[pi].points) - 2 and paths[pi].edge.label:
                label_len = max(label_len, len(_cut(paths[pi].edge.label, LABEL_MAX)))
        ends: list[int] = []
        spans = sorted((min(y1, *ys), max(y1, *ys), y1) for y1, ys in groups.items() if any(y != y1 for y in ys))
        for lo_y, hi_y, y1 in spans:
            ch = next((c for c, end in enumerate(ends) if end < lo_y - 0), None)
            if ch is None:
                ch = len(ends)
                ends.append(hi_y)
            else:
                ends[ch] = hi_y
            channels[(gap, y1)] = ch
        gap_w[gap] = 2 + 2 * len(ends) + (label_len + 2 if label_len else 0) + 2
    col_x = [0] * layers
    for r in range(1, layers):
        col_x[r] = col_x[r - 1] + col_w[r - 1] + gap_w[r - 1]
    for n in nodes:
        box = boxes[n.id]
        box.x = col_x[rank[vertex_of[n.id]]]

    width = (col_x[-1] + col_w[-1] if layers else 0) + 1
    height = max((b.y + b.h for b in boxes.values()), default=0)
    height = max(height, max((top[v] + 1 for v in top), default=0))
    bits = [[0] * width for _ in range(height)]
    chars = [[" "] * width for _ in range(height)]
    owner = [[BLANK] * width for _ in range(height)]

    def hline(y: int, x0: int, x1: int) -> None:
        a, b = min(x0, x1), max(x0, x1)
        for x in range(a, b):
            bits[y][x] |= R
            bits[y][x + 1] |= L

    def vline(x: int, y0: int, y1: int) -> None:
        a, b = min(y0, y1), max(y0, y1)
        for y in range(a, b):
            bits[y][x] |= D
            bits[y + 1][x] |= U

    arrows: list[tuple[int, int, str]] = []
    labels: list[tuple[int, int, str]] = []
    for pi, p in enumerate(paths):
        for i in range(len(p.points) - 1):
            r = p.points[i][0]
            v0, v1 = p.points[i][1], p.points[i + 1][1]
            y1, y2 = point_row(pi, i), point_row(pi, i + 1)
            # where the segment starts: the right edge of a box, or a dummy's way through its whole column
            x0 = boxes[node_of[v0]].x + boxes[node_of[v0]].w - 1 if v0 in node_of else col_x[r] - 1
            if v0 not in node_of:
                hline(y1, col_x[r] - 1, col_x[r] + col_w[r])
            x_end = col_x[r + 1] - 1  # the cell just left of the next column
            ch = channels.get((r, y1))
            if ch is None or y1 == y2:
                hline(y1, x0, x_end)
            else:
                cx = col_x[r] + col_w[r] + 1 + 2 * ch
                hline(y1, x0, cx)
                vline(cx, y1, y2)
                hline(y2, cx, x_end)
            if v1 in node_of:
                bits[y2][x_end] |= R  # joins the box's left border
            last = i == len(p.points) - 2
            if last and v1 in node_of and not p.reversed:
                arrows.append((x_end, y2, "▶"))
            if i == 0 and p.reversed and v0 in node_of:
                arrows.append((x0 + 1, y1, "◀"))
            if last and p.edge.label:
                text = _cut(p.edge.label, LABEL_MAX)
                labels.append((x_end - 2 - len(text), y2, text))
    for y in range(height):
        row_bits, row_chars, row_owner = bits[y], chars[y], owner[y]
        for x in range(width):
            if row_bits[x]:
                row_chars[x] = JUNCTIONS[row_bits[x]]
                row_owner[x] = LINE
    for x, y, text in labels:
        for k, c in enumerate(f" {text} "):
            if 0 <= x - 1 + k < width and owner[y][x - 1 + k] in (LINE, BLANK):
                chars[y][x - 1 + k] = c
                owner[y][x - 1 + k] = LABEL
    for x, y, c in arrows:
        chars[y][x] = c
        owner[y][x] = ARROW
    drawing = Drawing(width, height, chars, owner, boxes, ids, [])
    for box in boxes.values():
        paint_box(drawing, box, selected=False)
    columns: list[list[str]] = [[] for _ in range(layers)]
    for nid in ids:
        columns[rank[vertex_of[nid]]].append(nid)
    for col in columns:
        col.sort(key=lambda nid: boxes[nid].y)
    drawing.columns = [c for c in columns if c]
    return drawing


def paint_box(drawing: Drawing, box: Box, selected: bool) -> None:
    """Draw one box into the drawing (again, when its selection changes)."""
    tl, tr, bl, br, hz, vt, port = DOUBLE if selected else SINGLE
    x0, y0, x1, y1 = box.x, box.y, box.x + box.w - 1, box.y + box.h - 1
    rows = drawing.chars
    for y in range(y0, y1 + 1):
        row, own = rows[y], drawing.owner[y]
        for x in range(x0, x1 + 1):
            own[x] = box.index
            if y in (y0, y1):
                c = hz
            elif x in (x0, x1):
                c = vt
            else:
                c = " "
            row[x] = c
        if y not in (y0, y1) and (y == box.exit_row or y in box.extra_right):
            row[x1] = port
    rows[y0][x0], rows[y0][x1], rows[y1][x0], rows[y1][x1] = tl, tr, bl, br
    for k, c in enumerate(box.title):
        rows[y0 + 1][x0 + 2 + k] = c
    if box.h > 3:
        for k, c in enumerate(box.subtitle):
            rows[y0 + 2][x0 + 2 + k] = c


class _View:
    """What grandalf reads and writes on a vertex: its size and where it put it."""

    def __init__(self) -> None:
        self.w, self.h = 4, 1
        self.xy = (0.0, 0.0)


STATE_STYLE = {
    "pending": "dim", "queued": "dim", "running": "bold yellow", "completed": "bold green", "succeeded": "bold green",
    "failed": "bold red", "error": "bold red", "invalid": "bold red", "waiting_approval": "bold magenta",
    "waiting": "bold magenta", "cancelled": "dim italic", "rejected": "red", "skipped": "dim italic",
}


class WorkflowGraph(ScrollView, can_focus=True):
    """A workflow diagram that scrolls; arrows move the selection, which follows into view."""

    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "Left", show=False, id="graph.left"),
        Binding("right,l", "move(1, 0)", "Right", show=False, id="graph.right"),
        Binding("up,k", "move(0, -1)", "Up", show=False, id="graph.up"),
        Binding("down,j", "move(0, 1)", "Down", show=False, id="graph.down"),
    ]
    DEFAULT_CSS = "WorkflowGraph { height: 1fr; border: round $panel; } WorkflowGraph:focus { border: round $accent; }"

    class NodeSelected(Message):
        def __init__(self, graph: WorkflowGraph, node_id: str | None) -> None:
            super().__init__()
            self.graph = graph
            self.node_id = node_id

    def __init__(self, *, id: str | None = None, empty: str = "No nodes yet.") -> None:
        super().__init__(id=id)
        self.drawing: Drawing | None = None
        self.states: dict[str, str] = {}
        self.selected: str | None = None
        self.empty = empty
        self._strips: dict[int, Strip] = {}
        self._styles: dict[int, Style] = {}  # owner (a node's index, LINE, LABEL, ARROW) -> its style now
        self._base_style: Style | None = None

    # ---- content -----------------------------------------------------------------------------------------------

    def show(self, nodes: list[GraphNode], edges: list[GraphEdge], keep: str | None = None) -> None:
        """Lay out and draw a graph; the selection stays on `keep` (or the current node) when it still exists."""
        self.drawing = layout(nodes, edges)
        self._strips.clear()
        self._styles.clear()
        wanted = keep or self.selected
        self.selected = None
        if self.drawing.nodes:
            self.select(wanted if wanted in self.drawing.boxes else self.drawing.columns[0][0])
        else:
            self.post_message(self.NodeSelected(self, None))
        self.virtual_size = Size(self.drawing.width, self.drawing.height)
        self.refresh()

    def set_state(self, node_id: str, state: str | None) -> None:
        """Colour one node by its state; only its rows are drawn again."""
        if (self.states.get(node_id) or None) == (state or None):
            return
        if state:
            self.states[node_id] = state
        else:
            self.states.pop(node_id, None)
        self._dirty(node_id)

    def set_states(self, states: dict[str, str]) -> None:
        for node_id in set(self.states) | set(states):
            self.set_state(node_id, states.get(node_id))

    def select(self, node_id: str | None) -> None:
        d = self.drawing
        if d is None or node_id == self.selected or (node_id is not None and node_id not in d.boxes):
            return
        old, self.selected = self.selected, node_id
        for nid, on in ((old, False), (node_id, True)):
            if nid is not None and nid in d.boxes:
                paint_box(d, d.boxes[nid], on)
                self._dirty(nid)
        if node_id is not None:
            box = d.boxes[node_id]
            self.scroll_to_region(Region(box.x, box.y, box.w, box.h), animate=False, force=True)
        self.post_message(self.NodeSelected(self, node_id))

    def _dirty(self, node_id: str) -> None:
        d = self.drawing
        if d is None or node_id not in d.boxes:
            return
        box = d.boxes[node_id]
        self._styles.pop(box.index, None)
        for y in range(box.y, box.y + box.h):
            self._strips.pop(y, None)
        self.refresh()  # the other visible lines come from the cache

    # ---- keys and mouse ----------------------------------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        d = self.drawing
        if d is None or not d.nodes:
            return
        if self.selected is None:
            self.select(d.columns[0][0])
            return
        col = next(i for i, c in enumerate(d.columns) if self.selected in c)
        pos = d.columns[col].index(self.selected)
        if dy:
            pos = min(max(pos + dy, 0), len(d.columns[col]) - 1)
            self.select(d.columns[col][pos])
        elif 0 <= col + dx < len(d.columns):
            here = d.boxes[self.selected].y
            self.select(min(d.columns[col + dx], key=lambda nid: abs(d.boxes[nid].y - here)))

    def on_click(self, event: events.Click) -> None:
        if self.drawing is None:
            return
        box = self.drawing.box_at(event.x + int(self.scroll_x), event.y + int(self.scroll_y))
        if box is not None:
            self.select(box.node)

    # ---- drawing -----------------------------------------------------------------------------------------------

    def _style(self, who: int) -> Style:
        style = self._styles.get(who)
        if style is None:
            style = self._styles[who] = self._make_style(who, self._base())
        return style

    def _base(self) -> Style:
        if self._base_style is None:
            self._base_style = self.rich_style  # computed from the CSS of every ancestor: once, not per run
        return self._base_style

    def _make_style(self, who: int, base: Style) -> Style:
        d = self.drawing
        if who >= 0 and d is not None:
            nid = d.nodes[who]
            state = self.states.get(nid)
            style = Style.parse(STATE_STYLE.get(state, "")) if state else Style()
            if nid == self.selected:
                style += Style(bold=True)
            return base + style
        if who == LABEL:
            return base + Style(italic=True, dim=True)
        if who == ARROW:
            return base + Style(bold=True)
        return base + Style(dim=who == LINE)

    def _strip(self, y: int) -> Strip:
        strip = self._strips.get(y)
        if strip is None:
            d = self.drawing
            assert d is not None
            chars, owner = d.chars[y], d.owner[y]
            segments: list[Segment] = []
            run_start = 0
            for x in range(1, d.width + 1):
                if x == d.width or owner[x] != owner[run_start]:
                    segments.append(Segment("".join(chars[run_start:x]), self._style(owner[run_start])))
                    run_start = x
            strip = self._strips[y] = Strip(segments, d.width)
        return strip

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        d = self.drawing
        line = y + int(self.scroll_y)
        base = self._base()
        if d is None or not d.nodes:
            text = self.empty if y == 0 else ""
            return Strip([Segment(text.ljust(width)[:width], base)], width)
        if line >= d.height:
            return Strip.blank(width, base)
        x = int(self.scroll_x)
        return self._strip(line).crop_extend(x, x + width, base)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # the theme changed (or focus moved): the base colours did
        self._styles.clear()
        self._base_style = None
