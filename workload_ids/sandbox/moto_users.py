"""Permissions boundaries on IAM users, which moto 5.2 does not keep (AWS does).

``CreateUser`` drops the ``PermissionsBoundary`` parameter and
``PutUserPermissionsBoundary`` / ``DeleteUserPermissionsBoundary`` are not implemented.
Since every key-mode user now gets the workload boundary, the local AWS must keep it, or
each plan would want to set it again. This teaches moto's own classes the three steps,
the way moto keeps a role's boundary; nothing outside the emulator changes.
"""

from __future__ import annotations

from typing import Any

_INSTALLED = False


def install() -> None:
    """Idempotent; call before moto serves a request."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.core.responses import ActionResult
    from moto.iam import models, responses

    def boundary(user: Any) -> dict[str, str] | None:
        arn = getattr(user, "permissions_boundary_arn", None)
        if not arn:
            return None
        return {"PermissionsBoundaryType": "PermissionsBoundaryPolicy", "PermissionsBoundaryArn": arn}

    models.User.permissions_boundary = property(boundary)  # type: ignore[attr-defined]
    original_create = responses.IamResponse.create_user

    def create_user(self: Any) -> Any:
        result = original_create(self)
        arn = self._get_param("PermissionsBoundary")
        if arn:
            self.backend.get_user(self._get_param("UserName")).permissions_boundary_arn = arn
        return result

    def put_user_permissions_boundary(self: Any) -> Any:
        user = self.backend.get_user(self._get_param("UserName"))
        user.permissions_boundary_arn = self._get_param("PermissionsBoundary")
        return ActionResult({})

    def delete_user_permissions_boundary(self: Any) -> Any:
        user = self.backend.get_user(self._get_param("UserName"))
        user.permissions_boundary_arn = None
        return ActionResult({})

    responses.IamResponse.create_user = create_user  # type: ignore[method-assign]
    responses.IamResponse.put_user_permissions_boundary = put_user_permissions_boundary  # type: ignore[attr-defined]
    responses.IamResponse.delete_user_permissions_boundary = delete_user_permissions_boundary  # type: ignore[attr-defined]
    _INSTALLED = True
