//! The retry budget: a token bucket that bounds retries to a fraction of requests.
//!
//! Every call deposits `retry_ratio_permille / 1000` of a token; every retry withdraws one
//! whole token. The bucket starts full at `retry_reserve_tokens` and never holds more than
//! `retry_tokens_max`, so over any run of N calls the client retries at most
//! `retry_tokens_max + N * ratio` times: a small minimum for a quiet client, about 10% of the
//! load for a busy one. When the cluster is in trouble and every call fails, retries stop
//! instead of multiplying the load (the point of "retries amplify load when the system is
//! weakest"). Integer milli-tokens keep it exact and deterministic.

/// Milli-tokens per whole token.
const MILLI: u64 = 1000;

#[derive(Clone, Debug)]
pub struct RetryBudget {
    balance_millitokens: u64,
    deposit_millitokens: u64,
    balance_millitokens_max: u64,
}

impl RetryBudget {
    pub fn new(
        retry_ratio_permille: u64,
        retry_reserve_tokens: u64,
        retry_tokens_max: u64,
    ) -> Self {
        assert!(
            retry_ratio_permille <= MILLI,
            "ratio above 1 retry per request"
        );
        assert!(retry_reserve_tokens <= retry_tokens_max);
        RetryBudget {
            balance_millitokens: retry_reserve_tokens * MILLI,
            deposit_millitokens: retry_ratio_permille,
            balance_millitokens_max: retry_tokens_max * MILLI,
        }
    }

    /// A new call was made.
    pub fn deposit(&mut self) {
        self.balance_millitokens = self
            .balance_millitokens
            .saturating_add(self.deposit_millitokens)
            .min(self.balance_millitokens_max);
        assert!(self.balance_millitokens <= self.balance_millitokens_max);
    }

    /// Asks to retry once; false when the budget is spent.
    pub fn try_withdraw(&mut self) -> bool {
        if self.balance_millitokens < MILLI {
            return false;
        }
        self.balance_millitokens -= MILLI;
        true
    }

    /// Whole tokens available now.
    pub fn tokens(&self) -> u64 {
        self.balance_millitokens / MILLI
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_then_ten_percent() {
        let mut budget = RetryBudget::new(100, 3, 10);
        budget.deposit();
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        // 0.1 left: no retry.
        assert!(!budget.try_withdraw());
        for _ in 0..9 {
            budget.deposit();
        }
        // 0.1 + 0.9 = 1 token.
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }

    #[test]
    fn capped() {
        let mut budget = RetryBudget::new(1000, 1, 2);
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(budget.tokens(), 2);
    }
}
