"""What the SDK decides without doing I/O, shared by its two faces.

The sync face (`durable`) and the async face (`durable.aio`) are thin drivers over these
modules: the replay cursor and step numbering (`context`), each durable operation written
once as a generator of effects (`ops`), call retry and deadline arithmetic (`calls`), the
Session stream's packing and response routing (`batching`), and what a workflow start or
finish means (`specs`). Nothing here opens a channel, sleeps, or starts a thread or task:
a test pins that no module here imports threading, asyncio or a gRPC channel.
"""
