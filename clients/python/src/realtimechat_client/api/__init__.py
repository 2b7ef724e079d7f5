"""The v1 routes as typed methods, one module per resource; `ChatClient` has them all.

Each class is a mixin over a `Transport` (`self._transport`): it builds the request and
names the answer's type, and leaves tokens, retries and errors to the transport.
"""

from realtimechat_client.api.auth import AuthAPI
from realtimechat_client.api.channels import ChannelsAPI
from realtimechat_client.api.files import FilesAPI
from realtimechat_client.api.messages import MessagesAPI
from realtimechat_client.api.teams import TeamsAPI

__all__ = ["AuthAPI", "ChannelsAPI", "FilesAPI", "MessagesAPI", "TeamsAPI"]
