"""The one place that imports every table model, so `metadata` is complete.

Alembic's autogenerate and the models-match-migrations test read `metadata` from here;
a new domain module adds its `models` import below.
"""

from sqlmodel import SQLModel

from app.modules.auth import models as auth_models
from app.modules.business import models as business_models
from app.modules.chat import models as chat_models
from app.modules.finance import models as finance_models
from app.modules.gamification import models as gamification_models
from app.modules.limits import models as limits_models
from app.modules.milestone import models as milestone_models
from app.modules.users import models as users_models

metadata = SQLModel.metadata

__all__ = [
    "auth_models",
    "business_models",
    "chat_models",
    "finance_models",
    "gamification_models",
    "limits_models",
    "metadata",
    "milestone_models",
    "users_models",
]
