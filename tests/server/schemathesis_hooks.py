"""schemathesis hooks for tests/server/test_fuzz.py (SCHEMATHESIS_HOOKS).

A resumable upload's pieces are raw bytes (application/offset+octet-stream),
a media type schemathesis cannot make by itself.
"""

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.media_type(
    "application/offset+octet-stream", st.binary(max_size=4096)
)
