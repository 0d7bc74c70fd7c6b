"""The shop domain: five bounded contexts, their contracts, their stores and the dataset.

Nothing here knows how it is deployed: variants bind the interfaces in
`interfaces.py` to in-process objects, IPC proxies or HTTP clients.
"""
