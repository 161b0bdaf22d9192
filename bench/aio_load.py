"""The grpc.aio load generator, packaged as clients/load.py; `-m bench.aio_load` still runs it."""

from clients.load import main

if __name__ == "__main__":
    main()
