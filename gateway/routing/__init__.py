"""Choosing among eligible deployments.

Nothing here can add a deployment the policy did not allow.
"""
