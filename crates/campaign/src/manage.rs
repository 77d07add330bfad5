//! What people may do to a campaign once it exists, with the checks the API and the CLI share.
//!
//! Each action names the statuses it applies to, which is narrower than what the store allows:
//! the store lets a draft and a paused campaign both become `running`, but `resume` on a draft
//! is more likely a mistake than a wish to start it, so it is refused with the status named. The
//! store's own check still guards the change itself, so two racing requests cannot both move a
//! campaign somewhere it may not go.

use switchboard_store::{Campaign, CampaignStatus, StatusChange, Store};

use crate::CampaignError;

/// A status change people ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// draft → running
    Start,
    /// running → paused
    Pause,
    /// paused → running
    Resume,
    /// draft, running or paused → cancelled (final)
    Cancel,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }

    /// The statuses the action applies to.
    pub fn from(self) -> &'static [CampaignStatus] {
        use CampaignStatus::*;
        match self {
            Action::Start => &[Draft],
            Action::Pause => &[Running],
            Action::Resume => &[Paused],
            Action::Cancel => &[Draft, Running, Paused],
        }
    }

    pub fn to(self) -> CampaignStatus {
        match self {
            Action::Start | Action::Resume => CampaignStatus::Running,
            Action::Pause => CampaignStatus::Paused,
            Action::Cancel => CampaignStatus::Cancelled,
        }
    }
}

/// Applies `action` and returns the campaign as it is now.
pub async fn change_status(store: &Store, id: &str, action: Action) -> Result<Campaign, CampaignError> {
    let campaign = find(store, id).await?;
    let not_allowed = |status| CampaignError::NotAllowed {
        id: id.to_string(),
        action: action.verb(),
        status,
    };
    if !action.from().contains(&campaign.status) {
        return Err(not_allowed(campaign.status));
    }
    match store.set_campaign_status(id, action.to()).await? {
        StatusChange::Changed => Ok(Campaign {
            status: action.to(),
            ..campaign
        }),
        StatusChange::NotFound => Err(unknown(id)),
        StatusChange::NotAllowed { from } => Err(not_allowed(from)),
    }
}

/// The campaign, if contacts may be added to it: it exists and is not cancelled or completed.
pub async fn importable(store: &Store, id: &str) -> Result<Campaign, CampaignError> {
    let campaign = find(store, id).await?;
    if matches!(
        campaign.status,
        CampaignStatus::Cancelled | CampaignStatus::Completed
    ) {
        return Err(CampaignError::NotAllowed {
            id: id.to_string(),
            action: "import contacts into",
            status: campaign.status,
        });
    }
    Ok(campaign)
}

async fn find(store: &Store, id: &str) -> Result<Campaign, CampaignError> {
    store.get_campaign(id).await?.ok_or_else(|| unknown(id))
}

fn unknown(id: &str) -> CampaignError {
    CampaignError::UnknownCampaign { id: id.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_goes_where_the_store_allows() {
        for action in [Action::Start, Action::Pause, Action::Resume, Action::Cancel] {
            for from in action.from() {
                assert!(from.can_become(action.to()), "{} from {from}", action.verb());
            }
        }
        assert!(!Action::Resume.from().contains(&CampaignStatus::Draft));
        assert!(!Action::Start.from().contains(&CampaignStatus::Paused));
    }
}
