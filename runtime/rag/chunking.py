"""Text into overlapping chunks, and files on disk into text (.txt, .md, .html with tags stripped, .pdf)."""

from __future__ import annotations

import html
import io
import re
from html.parser import HTMLParser
from pathlib import Path

# 500 characters is about 110 WordPiece tokens of English: inside what tarx-embed (all-MiniLM-L6-v2, trained on
# 128-token inputs, 512 positions at most) embeds well, so a chunk is embedded whole.
CHUNK_CHARS = 500
OVERLAP_CHARS = 80
SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf"})


def chunk(text: str, size: int = CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[str]:
    """Chunks of at most `size` characters, cut at whitespace where possible, each starting `overlap` characters
    before the previous one ended."""
    text = re.sub(r"[ \t]+", " ", text).strip()
    if not text:
        return []
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            if cut > start:
                end = cut
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        if end >= len(text):
            break
        nxt = max(end - overlap, start + 1)
        space = text.find(" ", nxt, end)  # start the overlap on a word boundary
        start = space + 1 if space != -1 else nxt
    return out


class _Text(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in ("p", "br", "div", "li", "h1", "h2", "h3", "h4", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return html.unescape("".join(parser.parts))


def file_text(path: Path) -> str:
    """The text of a supported file (blocking: run it in a thread)."""
    suffix = path.suffix.lower()
    kind = "pdf" if suffix == ".pdf" else "html" if suffix in (".html", ".htm") else "text"
    return bytes_text(path.read_bytes(), kind)


def content_kind(content_type: str | None, url: str) -> str:
    """"pdf", "html" or "text" for a fetched document, from its content type, else its URL's suffix."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime == "application/pdf" or (not mime and url.lower().endswith(".pdf")):
        return "pdf"
    if mime in ("text/html", "application/xhtml+xml") or (not mime and url.lower().endswith((".html", ".htm"))):
        return "html"
    return "text"


def bytes_text(data: bytes, kind: str) -> str:
    """The text of a document's bytes (blocking for PDFs: run it in a thread)."""
    if kind == "pdf":
        from pypdf import PdfReader

        return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)
    text = data.decode("utf-8", errors="replace")
    return html_text(text) if kind == "html" else text
