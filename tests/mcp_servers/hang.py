"""An "MCP server" that starts and then never answers anything (not even initialize)."""

import sys
import time

if __name__ == "__main__":
    for _line in sys.stdin:
        time.sleep(3600)
