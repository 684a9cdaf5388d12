"""The masters ``xattn build --nbgrader-source`` writes for nbgrader are generated: say so, and notice edits.

The Formgrader invites instructors to edit ``source/NN_slug/NN_slug.ipynb``, but that file is made from
``solutions/NN_slug.py`` and the next build replaces it. So each such master

* opens with a locked markdown note, "generated from solutions/NN_slug.py: edit there", tagged
  :data:`NOTE_TAG`; :class:`DropGeneratedNote`, the first step of the course's ``generate_assignment``
  (``xattn_edu.grader.settings``), removes it, so the release and the gradebook are those of the
  master without the note;
* records a digest of its content in ``metadata.xattn.generated``, from which the build tells a master
  edited since it was written (:func:`edited_since_generated`) and refuses to overwrite it unless forced.

The digest covers what an edit changes (cell types, sources and nbgrader metadata), not outputs or the
metadata JupyterLab adds when cells run, so running a master in JupyterLab is not an edit.

Such a master also carries the kernel metadata of the environment that built it (``kernelspec`` and
``language_info`` as its ``python3`` kernel reports them): JupyterLab marks a notebook modified as soon
as its kernel reports other values, which made every release opened from the Formgrader's Preview look
edited. (The committed ``course/`` cannot do the same: its bytes may not depend on the machine.)
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

NOTE_TAG = "xattn-generated-note"
"""Tag of the note cell that heads a generated master."""


def _note_text(source: str) -> str:
    return (f"> **Generated from `{source}` by `xattn build`: edit there.** This copy is what nbgrader "
            f"releases and grades from; run `xattn build --nbgrader-source source` after editing `{source}`. "
            "The build refuses to overwrite this file once it has been edited here (`--force` overwrites it).")


def content_digest(notebook: NotebookNode) -> str:
    """16 hex digits of SHA-256 over each cell's type, source and nbgrader metadata."""
    cells = [[c.cell_type, c.source, c.get("metadata", {}).get("nbgrader", {})] for c in notebook.cells]
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def local_kernel_metadata() -> dict:
    """``kernelspec`` and ``language_info`` as this environment's ``python3`` kernel reports them to JupyterLab."""
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    return {"kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": "python3"},
            "language_info": dict(IPythonKernel.language_info)}  # fmt: skip


def generated_master(master: NotebookNode, source: str) -> NotebookNode:
    """A copy of ``master`` for nbgrader's ``source/``: headed by the note naming ``source`` (e.g.
    ``solutions/01_x.py``), with its digest and this environment's kernel metadata (see the module docstring)."""
    noted = copy.deepcopy(master)
    note = nbformat.v4.new_markdown_cell(_note_text(source))
    note.id = NOTE_TAG
    note.metadata = nbformat.from_dict({"deletable": False, "editable": False, "tags": [NOTE_TAG]})
    noted.cells.insert(0, note)
    noted.metadata.update(nbformat.from_dict(local_kernel_metadata()))
    noted.metadata.setdefault("xattn", {})["generated"] = {"from": source, "digest": content_digest(noted)}
    return noted


def edited_since_generated(path: Path) -> bool:
    """Whether the master at ``path`` differs from what the build wrote there (no digest: not written by it)."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable: certainly not as the build left it
        return True
    recorded = notebook.metadata.get("xattn", {}).get("generated", {}).get("digest")
    return recorded != content_digest(notebook)


class DropGeneratedNote(NbGraderPreprocessor):
    """Removes the generated-master note and its digest (the first step of the course's ``generate_assignment``)."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        nb.cells = [c for c in nb.cells if NOTE_TAG not in c.get("metadata", {}).get("tags", [])]
        nb.metadata.get("xattn", {}).pop("generated", None)
        return nb, resources
