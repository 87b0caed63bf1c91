"""``python -m viewfinder.main -c MODULE.yaml -o Global.mode=train ...``: PaddleX's ``python main.py``.

For scripts written against PaddleX's repository entry point; the same as ``viewfinder -c ...``.
"""
from viewfinder.cli import main

if __name__ == "__main__":
    main()
