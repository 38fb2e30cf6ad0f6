"""Score a decode directory against references (stage 8): ``python -m ualm_tk.bin.score_dir --help``.

The implementation and its documentation are in :mod:`ualm_tk.scoring.score_dir`.
"""

from ualm_tk.scoring.score_dir import get_parser, main  # noqa: F401  (get_parser for the docs/--help)

if __name__ == "__main__":
    main()
