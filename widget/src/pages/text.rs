//! The buyer's language and every text the pages show in it.
//!
//! All wording lives here, in Rust, for the three languages: the pages render their
//! static text from it, and the scripts get the texts they show (field errors, the
//! waiting state, decline messages) as JSON in a `data-texts` attribute — so the scripts
//! hold no wording of their own, and a test can see that every language has every text.

use serde::Serialize;

/// Uzbek, Russian or English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    Uz,
    Ru,
    #[default]
    En,
}

impl Lang {
    /// Every language, in the order the language switch shows them.
    pub const ALL: [Lang; 3] = [Lang::Uz, Lang::Ru, Lang::En];

    /// `uz`, `ru` or `en`.
    pub fn parse(text: &str) -> Option<Lang> {
        match text {
            "uz" => Some(Lang::Uz),
            "ru" => Some(Lang::Ru),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Uz => "uz",
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    /// The language's name in itself, for the language switch.
    pub fn endonym(self) -> &'static str {
        match self {
            Lang::Uz => "O‘zbekcha",
            Lang::Ru => "Русский",
            Lang::En => "English",
        }
    }

    /// Every text of the pages in this language.
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Uz => &UZ,
            Lang::Ru => &RU,
            Lang::En => &EN,
        }
    }

    /// Decimal separator in amounts.
    pub(crate) fn decimal_separator(self) -> char {
        match self {
            Lang::Uz | Lang::Ru => ',',
            Lang::En => '.',
        }
    }

    /// Thousands separator in amounts.
    pub(crate) fn group_separator(self) -> char {
        match self {
            // A no-break space, so an amount never wraps between its digits.
            Lang::Uz | Lang::Ru => '\u{a0}',
            Lang::En => ',',
        }
    }
}

/// Why a payment was declined, as the buyer is told it. Issuer response codes
/// (ISO 8583: `05`, `51`, …) and the gateway's 3-D Secure failure reasons
/// (`not_authenticated`, …) fold into these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    InsufficientFunds,
    CardExpired,
    CardNumberUnknown,
    SecurityCodeWrong,
    NotAuthenticated,
    IssuerUnavailable,
    /// Everything else, including "do not honour" and cards reported stolen: the buyer
    /// is never told more than that the bank said no.
    Refused,
}

impl DeclineReason {
    pub const ALL: [DeclineReason; 7] = [
        DeclineReason::InsufficientFunds,
        DeclineReason::CardExpired,
        DeclineReason::CardNumberUnknown,
        DeclineReason::SecurityCodeWrong,
        DeclineReason::NotAuthenticated,
        DeclineReason::IssuerUnavailable,
        DeclineReason::Refused,
    ];

    /// The reason for a decline code: an issuer response code, a 3-D Secure failure
    /// reason, or a named code. Unknown codes are [`DeclineReason::Refused`].
    pub fn of_code(code: &str) -> DeclineReason {
        match code {
            "51" | "insufficient_funds" => DeclineReason::InsufficientFunds,
            "54" | "33" | "expired_card" | "card_expired" => DeclineReason::CardExpired,
            "14" | "15" | "invalid_card_number" | "no_such_card" => DeclineReason::CardNumberUnknown,
            "N7" | "82" | "cvc_mismatch" | "incorrect_cvc" => DeclineReason::SecurityCodeWrong,
            "63" | "not_authenticated" | "rejected" | "authentication_failed" | "three_ds_failed" => {
                DeclineReason::NotAuthenticated
            }
            "91" | "96" | "timeout" | "unavailable" | "issuer_unavailable" | "system_malfunction" => {
                DeclineReason::IssuerUnavailable
            }
            _ => DeclineReason::Refused,
        }
    }

    /// The decline codes this reason is shown for (the JSON the checkout script gets
    /// lists each, so it needs no table of its own).
    pub(crate) fn codes(self) -> &'static [&'static str] {
        match self {
            DeclineReason::InsufficientFunds => &["51", "insufficient_funds"],
            DeclineReason::CardExpired => &["54", "33", "expired_card", "card_expired"],
            DeclineReason::CardNumberUnknown => &["14", "15", "invalid_card_number", "no_such_card"],
            DeclineReason::SecurityCodeWrong => &["N7", "82", "cvc_mismatch", "incorrect_cvc"],
            DeclineReason::NotAuthenticated => {
                &["63", "not_authenticated", "rejected", "authentication_failed", "three_ds_failed"]
            }
            DeclineReason::IssuerUnavailable => {
                &["91", "96", "timeout", "unavailable", "issuer_unavailable", "system_malfunction"]
            }
            DeclineReason::Refused => &["05", "43", "do_not_honor", "stolen_card"],
        }
    }

    pub fn message(self, lang: Lang) -> &'static str {
        let d = &lang.texts().decline;
        match self {
            DeclineReason::InsufficientFunds => d.insufficient_funds,
            DeclineReason::CardExpired => d.card_expired,
            DeclineReason::CardNumberUnknown => d.card_number_unknown,
            DeclineReason::SecurityCodeWrong => d.security_code_wrong,
            DeclineReason::NotAuthenticated => d.not_authenticated,
            DeclineReason::IssuerUnavailable => d.issuer_unavailable,
            DeclineReason::Refused => d.refused,
        }
    }
}

/// What a buyer is told when a payment is declined with `code`.
pub fn decline_message(code: &str, lang: Lang) -> &'static str {
    DeclineReason::of_code(code).message(lang)
}

/// Every text of the pages in one language.
#[derive(Debug)]
pub struct Texts {
    pub page: PageTexts,
    pub checkout: CheckoutTexts,
    pub outcome: OutcomeTexts,
    pub frame: FrameTexts,
    pub decline: DeclineTexts,
}

/// Texts on every page.
#[derive(Debug)]
pub struct PageTexts {
    /// The language switch's accessible name.
    pub language: &'static str,
    /// Above the merchant's name: who is paid.
    pub payment_to: &'static str,
    pub amount: &'static str,
    pub secured_by: &'static str,
    /// The card frame's title (the hosted page's title is the merchant's name).
    pub card_form_title: &'static str,
    /// Shown when scripts are off: the card form needs them.
    pub needs_javascript: &'static str,
}

/// The checkout page's texts; the ones its script shows go to it as JSON.
#[derive(Debug, Serialize)]
pub struct CheckoutTexts {
    pub card_details: &'static str,
    /// The pay button: `{amount}` is replaced by the amount and currency.
    pub pay: &'static str,
    pub paying: &'static str,
    pub loading_form: &'static str,
    pub secure_note: &'static str,
    pub frame_title: &'static str,
    pub declined_title: &'static str,
    pub try_another_card: &'static str,
    pub try_again: &'static str,
    /// `{count}` is replaced by the attempts left.
    pub attempts_left: &'static str,
    pub attempts_exhausted: &'static str,
    pub processing_title: &'static str,
    pub processing: &'static str,
    pub redirecting: &'static str,
    pub rate_limited: &'static str,
    pub paused: &'static str,
    pub form_reloaded: &'static str,
    pub network_error: &'static str,
    pub generic_error: &'static str,
}

/// The outcome screens.
#[derive(Debug)]
pub struct OutcomeTexts {
    pub success_title: &'static str,
    pub success: &'static str,
    pub declined_title: &'static str,
    pub expired_title: &'static str,
    pub expired: &'static str,
    pub cancelled_title: &'static str,
    pub cancelled: &'static str,
    pub processing_title: &'static str,
    pub processing: &'static str,
    pub continue_to_shop: &'static str,
}

/// The card frame's labels, and the messages its script shows.
#[derive(Debug, Serialize)]
pub struct FrameTexts {
    pub number: &'static str,
    pub expiry: &'static str,
    pub expiry_placeholder: &'static str,
    pub cvc: &'static str,
    pub holder: &'static str,
    pub number_required: &'static str,
    pub number_invalid: &'static str,
    pub brand_unsupported: &'static str,
    pub expiry_required: &'static str,
    pub expiry_invalid: &'static str,
    pub expiry_past: &'static str,
    pub cvc_required: &'static str,
    /// `{digits}` is replaced by the brand's CVC length.
    pub cvc_invalid: &'static str,
    pub holder_invalid: &'static str,
    pub check_fields: &'static str,
    pub form_expired: &'static str,
    pub rate_limited: &'static str,
    pub network_error: &'static str,
    pub generic_error: &'static str,
    /// `{last4}` is replaced by the card's last four digits.
    pub accepted: &'static str,
}

/// One message per [`DeclineReason`].
#[derive(Debug)]
pub struct DeclineTexts {
    pub insufficient_funds: &'static str,
    pub card_expired: &'static str,
    pub card_number_unknown: &'static str,
    pub security_code_wrong: &'static str,
    pub not_authenticated: &'static str,
    pub issuer_unavailable: &'static str,
    pub refused: &'static str,
}

static EN: Texts = Texts {
    page: PageTexts {
        language: "Language",
        payment_to: "Payment to",
        amount: "Amount",
        secured_by: "Secured by PaySys",
        card_form_title: "Card details",
        needs_javascript: "This payment page needs JavaScript. Turn it on in your browser and reload the page.",
    },
    checkout: CheckoutTexts {
        card_details: "Card details",
        pay: "Pay {amount}",
        paying: "Paying…",
        loading_form: "Loading the secure card form…",
        secure_note: "Your card details go straight to PaySys. The shop never sees them.",
        frame_title: "Secure card form",
        declined_title: "Payment declined",
        try_another_card: "Try another card",
        try_again: "Try again",
        attempts_left: "Attempts left: {count}",
        attempts_exhausted: "There have been too many attempts to pay. Return to the shop and start again.",
        processing_title: "Payment is being processed",
        processing: "This can take a minute. Please don’t close this page or pay again.",
        redirecting: "Taking you back to the shop…",
        rate_limited: "Too many attempts. Please wait a few minutes and try again.",
        paused: "Payments on this page are paused. Please contact the shop.",
        form_reloaded: "The card form had expired and has been reloaded. Please enter your card again.",
        network_error: "No connection to the payment service. Check your connection and try again.",
        generic_error: "Something went wrong. Please try again.",
    },
    outcome: OutcomeTexts {
        success_title: "Payment successful",
        success: "Thank you! Your payment has been received.",
        declined_title: "Payment declined",
        expired_title: "This payment link has expired",
        expired: "No money was taken. Return to the shop to start a new payment.",
        cancelled_title: "Payment cancelled",
        cancelled: "This payment was cancelled. No money was taken.",
        processing_title: "Payment is being processed",
        processing: "This can take a minute. This page refreshes by itself; please don’t pay again.",
        continue_to_shop: "Return to the shop",
    },
    frame: FrameTexts {
        number: "Card number",
        expiry: "Expiry date",
        expiry_placeholder: "MM/YY",
        cvc: "Security code (CVC)",
        holder: "Name on card (optional)",
        number_required: "Enter the card number.",
        number_invalid: "This card number is not valid. Check it and try again.",
        brand_unsupported: "This type of card is not accepted.",
        expiry_required: "Enter the expiry date.",
        expiry_invalid: "Enter the expiry date as MM/YY.",
        expiry_past: "This card has expired.",
        cvc_required: "Enter the security code.",
        cvc_invalid: "The security code has {digits} digits.",
        holder_invalid: "Enter the name as it is written on the card.",
        check_fields: "Check the card details.",
        form_expired: "This card form has expired. Reload the page to try again.",
        rate_limited: "Too many attempts. Please wait a few minutes and try again.",
        network_error: "No connection to the payment service. Check your connection and try again.",
        generic_error: "The card could not be checked. Please try again.",
        accepted: "Card •••• {last4} accepted",
    },
    decline: DeclineTexts {
        insufficient_funds: "There is not enough money on the card. Try another card.",
        card_expired: "The bank says this card has expired. Try another card.",
        card_number_unknown: "The bank does not recognise this card number. Check it or try another card.",
        security_code_wrong: "The security code (CVC) is wrong. Check it and try again.",
        not_authenticated: "Your bank could not confirm that it is you. Try again or use another card.",
        issuer_unavailable:
            "Your bank cannot process the payment right now. Try again in a few minutes or use another card.",
        refused: "Your bank declined the payment. Try another card or contact your bank.",
    },
};

static RU: Texts = Texts {
    page: PageTexts {
        language: "Язык",
        payment_to: "Получатель",
        amount: "Сумма",
        secured_by: "Защищено PaySys",
        card_form_title: "Данные карты",
        needs_javascript: "Для оплаты на этой странице нужен JavaScript. Включите его в браузере и обновите страницу.",
    },
    checkout: CheckoutTexts {
        card_details: "Данные карты",
        pay: "Оплатить {amount}",
        paying: "Оплата…",
        loading_form: "Загружаем защищённую форму карты…",
        secure_note: "Данные карты передаются напрямую в PaySys. Магазин их не видит.",
        frame_title: "Защищённая форма карты",
        declined_title: "Платёж отклонён",
        try_another_card: "Попробовать другую карту",
        try_again: "Попробовать снова",
        attempts_left: "Осталось попыток: {count}",
        attempts_exhausted: "Слишком много попыток оплаты. Вернитесь в магазин и начните заново.",
        processing_title: "Платёж обрабатывается",
        processing: "Это может занять минуту. Не закрывайте страницу и не оплачивайте повторно.",
        redirecting: "Возвращаем вас в магазин…",
        rate_limited: "Слишком много попыток. Подождите несколько минут и попробуйте снова.",
        paused: "Оплата на этой странице приостановлена. Обратитесь в магазин.",
        form_reloaded: "Срок действия формы карты истёк, и она загружена заново. Введите данные карты ещё раз.",
        network_error: "Нет связи с платёжным сервисом. Проверьте подключение и попробуйте снова.",
        generic_error: "Что-то пошло не так. Попробуйте ещё раз.",
    },
    outcome: OutcomeTexts {
        success_title: "Оплата прошла успешно",
        success: "Спасибо! Платёж получен.",
        declined_title: "Платёж отклонён",
        expired_title: "Срок действия ссылки на оплату истёк",
        expired: "Деньги не списаны. Вернитесь в магазин, чтобы начать оплату заново.",
        cancelled_title: "Платёж отменён",
        cancelled: "Этот платёж отменён. Деньги не списаны.",
        processing_title: "Платёж обрабатывается",
        processing: "Это может занять минуту. Страница обновится сама; не оплачивайте повторно.",
        continue_to_shop: "Вернуться в магазин",
    },
    frame: FrameTexts {
        number: "Номер карты",
        expiry: "Срок действия",
        expiry_placeholder: "ММ/ГГ",
        cvc: "Код безопасности (CVC)",
        holder: "Имя на карте (необязательно)",
        number_required: "Введите номер карты.",
        number_invalid: "Неверный номер карты. Проверьте его и попробуйте снова.",
        brand_unsupported: "Карты этого типа не принимаются.",
        expiry_required: "Введите срок действия.",
        expiry_invalid: "Введите срок действия в формате ММ/ГГ.",
        expiry_past: "Срок действия карты истёк.",
        cvc_required: "Введите код безопасности.",
        cvc_invalid: "Код безопасности состоит из {digits} цифр.",
        holder_invalid: "Введите имя так, как оно написано на карте.",
        check_fields: "Проверьте данные карты.",
        form_expired: "Срок действия формы истёк. Обновите страницу, чтобы попробовать снова.",
        rate_limited: "Слишком много попыток. Подождите несколько минут и попробуйте снова.",
        network_error: "Нет связи с платёжным сервисом. Проверьте подключение и попробуйте снова.",
        generic_error: "Не удалось проверить карту. Попробуйте ещё раз.",
        accepted: "Карта •••• {last4} принята",
    },
    decline: DeclineTexts {
        insufficient_funds: "Недостаточно средств на карте. Попробуйте другую карту.",
        card_expired: "Банк сообщает, что срок действия карты истёк. Попробуйте другую карту.",
        card_number_unknown: "Банк не распознал номер карты. Проверьте его или попробуйте другую карту.",
        security_code_wrong: "Неверный код безопасности (CVC). Проверьте его и попробуйте снова.",
        not_authenticated:
            "Банк не подтвердил, что платёж совершаете вы. Попробуйте снова или используйте другую карту.",
        issuer_unavailable:
            "Банк сейчас не может провести платёж. Попробуйте через несколько минут или используйте другую карту.",
        refused: "Банк отклонил платёж. Попробуйте другую карту или обратитесь в банк.",
    },
};

static UZ: Texts = Texts {
    page: PageTexts {
        language: "Til",
        payment_to: "To‘lov oluvchi",
        amount: "Summa",
        secured_by: "PaySys himoyasida",
        card_form_title: "Karta ma’lumotlari",
        needs_javascript: "Bu to‘lov sahifasi uchun JavaScript kerak. Uni brauzerda yoqing va sahifani yangilang.",
    },
    checkout: CheckoutTexts {
        card_details: "Karta ma’lumotlari",
        pay: "{amount} to‘lash",
        paying: "To‘lanmoqda…",
        loading_form: "Xavfsiz karta shakli yuklanmoqda…",
        secure_note: "Karta ma’lumotlari to‘g‘ridan-to‘g‘ri PaySys’ga yuboriladi. Do‘kon ularni ko‘rmaydi.",
        frame_title: "Xavfsiz karta shakli",
        declined_title: "To‘lov rad etildi",
        try_another_card: "Boshqa kartani sinab ko‘rish",
        try_again: "Qayta urinish",
        attempts_left: "Qolgan urinishlar: {count}",
        attempts_exhausted: "To‘lashga urinishlar juda ko‘p bo‘ldi. Do‘konga qaytib, qaytadan boshlang.",
        processing_title: "To‘lov amalga oshirilmoqda",
        processing: "Bu bir daqiqa vaqt olishi mumkin. Sahifani yopmang va qayta to‘lamang.",
        redirecting: "Do‘konga qaytmoqdasiz…",
        rate_limited: "Urinishlar juda ko‘p. Bir necha daqiqa kutib, qayta urinib ko‘ring.",
        paused: "Bu sahifada to‘lovlar vaqtincha to‘xtatilgan. Do‘konga murojaat qiling.",
        form_reloaded: "Karta shaklining muddati tugagan edi va u qayta yuklandi. Karta ma’lumotlarini qayta kiriting.",
        network_error: "To‘lov xizmati bilan aloqa yo‘q. Internetni tekshirib, qayta urinib ko‘ring.",
        generic_error: "Nimadir noto‘g‘ri ketdi. Qayta urinib ko‘ring.",
    },
    outcome: OutcomeTexts {
        success_title: "To‘lov muvaffaqiyatli amalga oshirildi",
        success: "Rahmat! To‘lovingiz qabul qilindi.",
        declined_title: "To‘lov rad etildi",
        expired_title: "To‘lov havolasining muddati tugagan",
        expired: "Hisobingizdan pul yechilmadi. Yangi to‘lov uchun do‘konga qayting.",
        cancelled_title: "To‘lov bekor qilindi",
        cancelled: "Bu to‘lov bekor qilindi. Hisobingizdan pul yechilmadi.",
        processing_title: "To‘lov amalga oshirilmoqda",
        processing: "Bu bir daqiqa vaqt olishi mumkin. Sahifa o‘zi yangilanadi; qayta to‘lamang.",
        continue_to_shop: "Do‘konga qaytish",
    },
    frame: FrameTexts {
        number: "Karta raqami",
        expiry: "Amal qilish muddati",
        expiry_placeholder: "OO/YY",
        cvc: "Xavfsizlik kodi (CVC)",
        holder: "Kartadagi ism (ixtiyoriy)",
        number_required: "Karta raqamini kiriting.",
        number_invalid: "Karta raqami noto‘g‘ri. Tekshirib, qayta kiriting.",
        brand_unsupported: "Bu turdagi karta qabul qilinmaydi.",
        expiry_required: "Amal qilish muddatini kiriting.",
        expiry_invalid: "Muddatni OO/YY ko‘rinishida kiriting.",
        expiry_past: "Kartaning amal qilish muddati tugagan.",
        cvc_required: "Xavfsizlik kodini kiriting.",
        cvc_invalid: "Xavfsizlik kodi {digits} ta raqamdan iborat.",
        holder_invalid: "Ismni kartada yozilganidek kiriting.",
        check_fields: "Karta ma’lumotlarini tekshiring.",
        form_expired: "Karta shaklining muddati tugadi. Qayta urinish uchun sahifani yangilang.",
        rate_limited: "Urinishlar juda ko‘p. Bir necha daqiqa kutib, qayta urinib ko‘ring.",
        network_error: "To‘lov xizmati bilan aloqa yo‘q. Internetni tekshirib, qayta urinib ko‘ring.",
        generic_error: "Kartani tekshirib bo‘lmadi. Qayta urinib ko‘ring.",
        accepted: "•••• {last4} karta qabul qilindi",
    },
    decline: DeclineTexts {
        insufficient_funds: "Kartada mablag‘ yetarli emas. Boshqa kartani sinab ko‘ring.",
        card_expired: "Bankning ma’lumotiga ko‘ra, kartaning muddati tugagan. Boshqa kartani sinab ko‘ring.",
        card_number_unknown: "Bank bu karta raqamini tanimadi. Raqamni tekshiring yoki boshqa kartani sinab ko‘ring.",
        security_code_wrong: "Xavfsizlik kodi (CVC) noto‘g‘ri. Tekshirib, qayta urinib ko‘ring.",
        not_authenticated: "Bankingiz shaxsingizni tasdiqlay olmadi. Qayta urinib ko‘ring yoki boshqa kartadan foydalaning.",
        issuer_unavailable: "Bankingiz hozir to‘lovni amalga oshira olmaydi. Bir necha daqiqadan so‘ng urinib ko‘ring yoki boshqa kartadan foydalaning.",
        refused: "Bankingiz to‘lovni rad etdi. Boshqa kartani sinab ko‘ring yoki bankingizga murojaat qiling.",
    },
};
