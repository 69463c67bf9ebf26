"""Build small learner notebooks for unit 02 (``02_softmax_sampling``) from cell sources.

Each correct solution below is written independently of course_lib's reference (the grader must
recognise it as correct without it being the same code).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

NB = "02_softmax_sampling"

IMPORTS = "import torch\nimport math\nfrom course_lib.exercises import check\ntorch.manual_seed(0)"

SOFTMAX = '''# EXERCISE: 02.stable_softmax
def stable_softmax(x, dim=-1):
    """Softmax along dim, stable for large logits."""
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = shifted.exp()
    return e / e.sum(dim=dim, keepdim=True)'''

TEMPERATURE = '''# EXERCISE: 02.softmax_with_temperature
def softmax_with_temperature(logits, temperature):
    z = logits / temperature
    e = (z - z.amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)'''

SAMPLE = '''# EXERCISE: 02.sample_next_token
def sample_next_token(logits, temperature, generator):
    z = logits / temperature
    e = (z - z.amax(dim=-1, keepdim=True)).exp()
    probs = e / e.sum(dim=-1, keepdim=True)
    u = torch.rand(probs.shape[0], generator=generator)
    below = probs.cumsum(dim=-1) <= u[:, None]
    return below.sum(dim=-1).clamp(max=probs.shape[-1] - 1)'''

CROSS_ENTROPY = '''# EXERCISE: 02.cross_entropy
def cross_entropy(logits, targets):
    logp = logits - logits.logsumexp(dim=-1, keepdim=True)
    return -logp.gather(-1, targets[:, None]).mean()'''

CORRECT = {"02.stable_softmax": SOFTMAX, "02.softmax_with_temperature": TEMPERATURE,
           "02.sample_next_token": SAMPLE, "02.cross_entropy": CROSS_ENTROPY}
FUNCTIONS = {"02.stable_softmax": "stable_softmax", "02.softmax_with_temperature": "softmax_with_temperature",
             "02.sample_next_token": "sample_next_token", "02.cross_entropy": "cross_entropy"}
SIGNATURES = {"02.stable_softmax": "x, dim=-1", "02.softmax_with_temperature": "logits, temperature",
              "02.sample_next_token": "logits, temperature, generator", "02.cross_entropy": "logits, targets"}


def stub(ex_id: str) -> str:
    """The exercise cell as handed out (what `course build` makes of a solution)."""
    return (f"# EXERCISE: {ex_id}\ndef {FUNCTIONS[ex_id]}({SIGNATURES[ex_id]}):\n"
            f"    # YOUR CODE HERE (exercise {ex_id})\n"
            f'    raise NotImplementedError("exercise {ex_id}: replace this line with your code")')


def check_cell(ex_id: str) -> str:
    return f'check("{ex_id}", {FUNCTIONS[ex_id]})'


def notebook(cells: list, tags: dict = None) -> nbformat.NotebookNode:
    """A notebook from a list of sources; strings starting with '#md ' become markdown cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, src in enumerate(cells):
        if src.startswith("#md "):
            nb.cells.append(nbformat.v4.new_markdown_cell(src[4:]))
        else:
            cell = nbformat.v4.new_code_cell(src)
            if tags and i in tags:
                cell.metadata["tags"] = list(tags[i])
            nb.cells.append(cell)
    return nb


def unit02(overrides: dict = None, extra_before: list = (), extra_after: list = (), checks: bool = False) -> list:
    """Cell sources of a unit 02 notebook: imports, then each exercise (correct unless overridden;
    an override of None drops the exercise cell)."""
    overrides = overrides or {}
    cells = ["#md # Unit 02", IMPORTS, *extra_before]
    for ex_id, src in CORRECT.items():
        src = overrides.get(ex_id, src)
        if src is None:
            continue
        cells.append(src)
        if checks:
            cells.append(check_cell(ex_id))
    cells += list(extra_after)
    return cells


def write(folder: Path, student: str, cells: list, name: str = NB + ".ipynb", tags: dict = None) -> Path:
    d = Path(folder) / student
    d.mkdir(parents=True, exist_ok=True)
    path = d / name
    nbformat.write(notebook(cells, tags), str(path))
    return path
