"""RAG: sources, chunking, indexing (FTS5 and float32 vectors in SQLite), the directory watcher, hybrid retrieval."""

from runtime.rag.service import Hit, RagService

__all__ = ["Hit", "RagService"]
