import gc
import sys

# Start-up creates tens of thousands of long-lived objects (modules, schemas, protobuf
# descriptors); the cyclic collector would walk them again and again while they are made. It
# stays off until the server is ready (server/app.py turns it back on; other commands at once).
gc.disable()

from server.cli import main  # noqa: E402

sys.exit(main())
