//! The wildcard patterns of IAM policies and EC2 filters: `*` matches
//! any run of characters (none too), `?` exactly one; everything else
//! matches itself.

/// Whether `text` matches `pattern`; with `fold_case`, ASCII letters
/// match either case (action names are case-insensitive in IAM, ARNs
/// are not).
pub fn matches(pattern: &str, text: &str, fold_case: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let same = |a: char, b: char| {
        if fold_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Greedy matching with one back-tracking point (the last `*`): linear
    // in practice, O(len(p) * len(t)) at worst, never recursive.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match (p.get(pi), t.get(ti)) {
            (Some('*'), _) => {
                star = Some((pi, ti));
                pi += 1;
            }
            (Some('?'), Some(_)) => {
                pi += 1;
                ti += 1;
            }
            (Some(&pc), Some(&tc)) if same(pc, tc) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and retry.
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_star_and_question_mark() {
        assert!(matches("ec2:DescribeVpcs", "ec2:DescribeVpcs", false));
        assert!(!matches("ec2:DescribeVpcs", "ec2:DescribeVpc", false));
        assert!(matches("*", "", false));
        assert!(matches("*", "anything:at/all", false));
        assert!(matches("ec2:Describe*", "ec2:Describe", false));
        assert!(matches("ec2:Describe*", "ec2:DescribeInstances", false));
        assert!(!matches("ec2:Describe*", "ec2:CreateVpc", false));
        assert!(matches(
            "ec2:*SecurityGroup*",
            "ec2:AuthorizeSecurityGroupIngress",
            false
        ));
        assert!(matches(
            "ec2:*SecurityGroup*",
            "ec2:CreateSecurityGroup",
            false
        ));
        assert!(matches(
            "ec2:*SecurityGroup*",
            "ec2:DescribeSecurityGroups",
            false
        ));
        assert!(!matches("ec2:*SecurityGroup*", "ec2:CreateVpc", false));
        assert!(matches("sg-?", "sg-1", false));
        assert!(!matches("sg-?", "sg-", false));
        assert!(!matches("sg-?", "sg-12", false));
        assert!(matches("a*b*c", "aXXbYYbZZc", false));
        assert!(!matches("a*b*c", "aXXbYYbZZ", false));
        assert!(matches("**", "x", false));
        assert!(!matches("", "x", false));
        assert!(matches("", "", false));
    }

    #[test]
    fn case_folds_only_when_asked() {
        assert!(matches("EC2:describe*", "ec2:DescribeVpcs", true));
        assert!(!matches("EC2:describe*", "ec2:DescribeVpcs", false));
        assert!(matches("vpc/VPC-?", "vpc/vpc-1", true));
    }

    #[test]
    fn non_ascii_text_is_matched_by_characters() {
        assert!(matches("user/?", "user/구", false));
        assert!(matches("user/*름", "user/구름", false));
    }

    #[test]
    fn long_adversarial_patterns_finish() {
        let pattern = "*a".repeat(50) + "b";
        let text = "a".repeat(5000);
        assert!(!matches(&pattern, &text, false));
    }
}
