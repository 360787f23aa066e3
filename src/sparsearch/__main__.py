"""``python -m sparsearch``: the same CLI as the ``sparsearch`` command."""

from sparsearch.cli import app

if __name__ == "__main__":
    app(prog_name="sparsearch")
