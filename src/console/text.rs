//! The console's words in Chinese and English. Reason messages come from
//! the catalogue (`messages`); everything else a page says is here, one
//! key per phrase, so no page holds a string of one language only.

use crate::messages::Lang;

/// (key, zh-CN, en)
const TEXTS: &[(&str, &str, &str)] = &[
    ("title", "tripgate 监管控制台", "tripgate regulator console"),
    ("nav.overview", "概览", "Overview"),
    ("nav.rejections", "拒绝记录", "Rejections"),
    ("nav.subject", "按人员查询", "Subject search"),
    ("nav.appeals", "申诉", "Appeals"),
    ("nav.trail", "审计链", "Trail"),
    ("nav.sign_out", "退出登录", "Sign out"),
    ("signed_in_as", "已登录：", "Signed in as "),
    ("auth_off", "未启用认证（本地配置）", "Authentication is off (local configuration)"),
    ("overview.heading", "最近 24 小时", "The last 24 hours"),
    ("overview.decisions", "决定", "Decisions"),
    ("overview.rejections", "拒绝", "Rejections"),
    ("overview.rate", "拒绝率", "Rejection rate"),
    ("overview.open_appeals", "待处理申诉", "Open appeals"),
    ("overview.per_hour", "每小时决定与拒绝", "Decisions and rejections per hour"),
    ("overview.by_reason", "拒绝原因", "Rejections by reason"),
    ("overview.by_city", "各城市拒绝", "Rejections by city"),
    ("overview.none", "暂无数据", "Nothing yet"),
    ("legend.decisions", "决定", "decisions"),
    ("legend.rejections", "拒绝", "rejections"),
    ("filter.from", "起（RFC 3339）", "From (RFC 3339)"),
    ("filter.to", "止（RFC 3339）", "To (RFC 3339)"),
    ("filter.city", "城市", "City"),
    ("filter.hook", "环节", "Hook"),
    ("filter.reason", "原因", "Reason"),
    ("filter.any", "全部", "any"),
    ("filter.apply", "筛选", "Filter"),
    ("col.time", "时间", "Time"),
    ("col.city", "城市", "City"),
    ("col.hook", "环节", "Hook"),
    ("col.reasons", "原因", "Reasons"),
    ("col.decision", "决定", "Decision"),
    ("col.party", "当事人", "Party"),
    ("col.status", "状态", "Status"),
    ("col.issuer", "发码地", "Issuer"),
    ("col.source", "来源", "Source"),
    ("col.age", "码龄", "Age"),
    ("col.eligible_after", "可恢复时间", "Eligible after"),
    ("col.code", "原因代码", "Reason code"),
    ("col.rule", "规则", "Rule"),
    ("col.message", "说明", "Message"),
    ("col.state", "状态", "State"),
    ("col.filed", "提交时间", "Filed"),
    ("col.filed_by", "提交方", "Filed by"),
    ("col.grounds", "申诉理由", "Grounds"),
    ("col.outcome", "结果", "Outcome"),
    ("col.instance", "实例", "Instance"),
    ("col.seq", "序号", "Seq"),
    ("col.hash", "哈希", "Hash"),
    ("col.signed_at", "签名时间", "Signed at"),
    ("col.kind", "类型", "Kind"),
    ("col.signature", "签名", "Signature"),
    ("col.link", "链上记录", "Link in store"),
    ("next_page", "下一页", "Next page"),
    ("first_page", "第一页", "First page"),
    ("no_rows", "没有符合条件的记录", "No matching records"),
    ("decision.heading", "决定详情", "Decision"),
    ("decision.read_only", "决定本身只读；申诉通过申诉流程处理。", "Decisions are read-only here; contest one through an appeal."),
    ("decision.policy", "政策版本", "Policy version"),
    ("decision.degraded", "降级放行", "Allowed degraded"),
    ("decision.client", "调用方", "Client"),
    ("decision.parties", "当事人状态", "Parties"),
    ("decision.reasons", "原因", "Reasons"),
    ("decision.appeals", "申诉", "Appeals"),
    ("decision.no_appeal", "无申诉", "No appeal"),
    ("decision.chain", "链位置", "Chain"),
    ("subject.heading", "按人员查询", "Subject search"),
    ("subject.help", "输入的标识在服务器端散列后查询，不会出现在地址栏或日志中，也不会回显。", "The id you type is hashed on the server, sent by POST so it never lands in a URL or a log, and never shown back."),
    ("subject.label", "人员标识（如手机号）", "Subject id (e.g. a phone number)"),
    ("subject.search", "查询", "Search"),
    ("subject.results", "该人员的决定（最新 100 条）", "This subject's decisions (newest 100)"),
    ("subject.invalid", "标识格式不正确：1 到 128 个字母、数字或 . _ : -", "Not a subject id: 1 to 128 of letters, digits and . _ : -"),
    ("appeals.heading", "申诉", "Appeals"),
    ("appeals.open", "待处理（最早的在前）", "Open (oldest first)"),
    ("appeals.resolved", "已处理", "Resolved"),
    ("appeals.none_open", "没有待处理的申诉", "No open appeals"),
    ("appeals.none_resolved", "没有已处理的申诉", "No resolved appeals"),
    ("appeals.resolve", "处理", "Resolve"),
    ("appeals.outcome", "结果", "Outcome"),
    ("appeals.cause", "推翻原因（推翻时必填）", "Cause (required to overturn)"),
    ("appeals.note", "说明", "Note"),
    ("appeals.submit", "提交处理结果（不可更改）", "Submit (final)"),
    ("appeals.id_warning", "申诉文字中可能含有个人标识（如手机号或身份证号），已原样保存并标记。请勿在说明中写入任何个人标识。", "The text may hold a personal identifier (a phone or ID number); it was kept as written and flagged. Never write a person's id in a note."),
    ("appeals.note_hint", "请勿在说明中写入任何个人标识：与当事人标识相同的部分会被替换为 [subject id]；像手机号或身份证号的数字串会原样保存并被标记。", "Never write a person's id in a note: parts equal to a party's id are replaced by [subject id]; digit runs as long as a phone or ID number are kept as written and flagged."),
    ("appeals.only_regulator", "只有监管方可以处理申诉。", "Only a regulator may resolve appeals."),
    ("outcome.upheld", "维持", "upheld"),
    ("outcome.overturned", "推翻", "overturned"),
    ("state.open", "待处理", "open"),
    ("state.resolved", "已处理", "resolved"),
    ("cause.provider_data_wrong", "健康码数据有误", "provider data wrong"),
    ("cause.status_outdated", "状态已过时", "status outdated"),
    ("cause.wrong_person", "非本人", "wrong person"),
    ("cause.policy_misapplied", "政策适用错误", "policy misapplied"),
    ("cause.other", "其他", "other"),
    ("trail.heading", "审计链", "The audit trail"),
    ("trail.help", "每条链最新的签名链头。签名以服务公钥验证；链上记录一栏说明该链头指向的记录是否仍在存储中且哈希一致（否即链被截断或篡改）。完整校验请运行 tripgate audit verify。", "The newest signed head of every chain. Signatures are checked with the service's public key; the link column says whether the record a head names is still stored with that hash (no: the chain was cut short or altered). For a full check run tripgate audit verify."),
    ("trail.public_key", "公钥", "Public key"),
    ("trail.ok", "一致", "intact"),
    ("trail.bad", "不一致", "MISSING OR ALTERED"),
    ("trail.sig_ok", "有效", "valid"),
    ("trail.sig_bad", "无效", "INVALID"),
    ("trail.none", "尚无签名链头", "No signed head yet"),
    ("trail.verdict_ok", "所有链头均有效，且其记录仍在存储中。", "Every head is validly signed and its record is still stored."),
    ("trail.verdict_bad", "有链头无效或其记录缺失：请运行 tripgate audit verify。", "A head is invalid or its record is missing: run tripgate audit verify."),
    ("signin.heading", "登录", "Sign in"),
    ("signin.help", "请输入监管方令牌。令牌只提交一次，之后以会话 Cookie 保持登录（8 小时）。", "Enter a regulator token. It is sent once; a session cookie keeps you signed in (8 hours)."),
    ("signin.token", "令牌", "Token"),
    ("signin.submit", "登录", "Sign in"),
    ("signin.unknown", "令牌无效。", "The token is not recognised."),
    ("signin.forbidden", "此令牌不属于监管方，不能登录控制台。", "This token's role is not regulator; the console is for regulators."),
    ("signin.rate_limited", "请求过于频繁，请稍后再试。", "Too many requests; try again shortly."),
    ("error.heading", "出错了", "Something went wrong"),
    ("error.not_found", "未找到。", "Not found."),
    ("error.csrf", "表单已过期或来源不明，请返回重试。", "The form expired or came from elsewhere; go back and try again."),
    ("error.unavailable", "审计存储暂时不可用，请稍后再试。", "The audit store is unavailable; try again shortly."),
    ("error.bad_input", "输入有误：", "Bad input: "),
    ("yes", "是", "yes"),
    ("no", "否", "no"),
    ("switch_lang", "English", "中文"),
];

/// The phrase `key` in `lang` ("?" if it is not in the table:
/// a test checks every key the pages use is).
pub fn t(lang: Lang, key: &str) -> &'static str {
    TEXTS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, zh, en)| match lang {
            Lang::ZhCn => *zh,
            Lang::En => *en,
        })
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(key: &str) -> bool {
        TEXTS.iter().any(|(k, _, _)| *k == key)
    }

    #[test]
    fn keys_are_unique_and_both_languages_are_filled() {
        for (i, (key, zh, en)) in TEXTS.iter().enumerate() {
            assert!(!zh.is_empty() && !en.is_empty(), "{key}");
            assert!(
                TEXTS[i + 1..].iter().all(|(k, _, _)| k != key),
                "{key} twice"
            );
        }
    }

    #[test]
    fn every_key_the_console_uses_is_in_the_table() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            for piece in source.split("t(lang, \"").skip(1) {
                let key = piece.split('"').next().unwrap();
                assert!(has(key), "{}: {key:?} is not in TEXTS", path.display());
            }
        }
    }
}
