"""A local stand-in for NHS England's side of the opt-out check: a real mesh-sandbox server and a fake service.

For demos and tests only. Nothing here is used against the real MESH.
"""
