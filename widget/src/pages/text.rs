//! The buyer's language and the texts the pages show in it.

/// Uzbek, Russian or English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    Uz,
    Ru,
    #[default]
    En,
}

impl Lang {
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
}

/// What a buyer is told when a payment is declined with `code`.
pub fn decline_message(code: &str, lang: Lang) -> &'static str {
    let _ = code;
    match lang {
        Lang::Uz => "To'lov rad etildi. Boshqa kartani sinab ko'ring.",
        Lang::Ru => "Платёж отклонён. Попробуйте другую карту.",
        Lang::En => "The payment was declined. Try another card.",
    }
}
