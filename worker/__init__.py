"""The GPU worker: a Django-free Celery consumer that runs evaluations on a GPU host.

It talks to its node only through the broker and the node's REST API with a node token, and
never imports Django or anything under apps/.
"""
