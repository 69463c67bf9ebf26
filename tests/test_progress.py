"""`course progress` shows the states the checks showed in the saved notebooks."""

import nbformat

from course_lib.cli import main
from course_lib.exercises import check
from course_lib.progress import progress


def _output_of(result):
    data, meta = result._repr_mimebundle_()
    return nbformat.v4.new_output("display_data", data=data, metadata=meta)


def test_progress_reads_check_outputs_and_stubs(tmp_path, capsys):
    def good(x, dim=-1):
        e = (x - x.amax(dim=dim, keepdim=True)).exp()
        return e / e.sum(dim=dim, keepdim=True)

    cells = [
        nbformat.v4.new_code_cell("# EXERCISE: 02.stable_softmax\ndef stable_softmax(x, dim=-1):\n    ..."),
        nbformat.v4.new_code_cell('check("02.stable_softmax", stable_softmax)',
                                  outputs=[_output_of(check("02.stable_softmax", good))]),
        nbformat.v4.new_code_cell('# EXERCISE: 02.cross_entropy\ndef cross_entropy(l, t):\n'
                                  '    raise NotImplementedError("exercise 02.cross_entropy: replace")'),
        nbformat.v4.new_code_cell('check("02.softmax_with_temperature", softmax_with_temperature)',
                                  outputs=[_output_of(check("02.softmax_with_temperature",
                                                            lambda z, t: good(z / t)))]),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nbformat.write(nb, tmp_path / "02_softmax_sampling.ipynb")
    rows = {r.exercise: r for r in progress(tmp_path)}
    assert rows["02.stable_softmax"].status == "passed" and rows["02.stable_softmax"].points == 3
    assert rows["02.cross_entropy"].status == "not_attempted"
    assert rows["02.softmax_with_temperature"].status == "passed"
    assert rows["02.sample_next_token"].status == "not_checked"
    assert main(["progress", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "02.stable_softmax" in out and "not checked" in out and "points" in out


def test_progress_on_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["progress", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
