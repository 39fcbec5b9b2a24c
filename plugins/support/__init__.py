"""Customer support: route a customer's message to its intent."""

from .datamodule import SupportDataModule
from .replies import SupportRepliesDataModule
from .tickets import SupportTicketsDataModule

DATAMODULES = {
    "support": SupportDataModule,
    "support_replies": SupportRepliesDataModule,
    "support_tickets": SupportTicketsDataModule,
}
