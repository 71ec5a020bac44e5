package eval

import "strings"

// The categories LLaMA-Factory scores, in the order its results.log lists
// them; Average takes every question.
var mcCategories = []string{"Average", "STEM", "Social Sciences", "Humanities", "Other"}

// cmmluSubjects are CMMLU's 67 subjects: file name, Chinese name (what the
// prompt calls the subject) and category, in the order LLaMA-Factory's
// evaluation/cmmlu/mapping.json lists them (which is the order subjects are
// evaluated in, and the exemplar draws follow). The category is the main
// one of the subject's CMMLU group; CMMLU's China-specific subjects also
// sit in one of the four.
var cmmluSubjects = []Subject{
	{"agronomy", "农学", "Other"},
	{"anatomy", "解剖学", "STEM"},
	{"ancient_chinese", "古汉语", "Social Sciences"},
	{"arts", "艺术学", "Humanities"},
	{"astronomy", "天文学", "STEM"},
	{"business_ethics", "商业伦理", "Social Sciences"},
	{"chinese_civil_service_exam", "中国公务员考试", "Social Sciences"},
	{"chinese_driving_rule", "中国驾驶规则", "Other"},
	{"chinese_food_culture", "中国饮食文化", "Social Sciences"},
	{"chinese_foreign_policy", "中国外交政策", "Social Sciences"},
	{"chinese_history", "中国历史", "Humanities"},
	{"chinese_literature", "中国文学", "Humanities"},
	{"chinese_teacher_qualification", "中国教师资格", "Social Sciences"},
	{"college_actuarial_science", "大学精算学", "STEM"},
	{"college_education", "大学教育学", "Social Sciences"},
	{"college_engineering_hydrology", "大学工程水文学", "STEM"},
	{"college_law", "大学法律", "Humanities"},
	{"college_mathematics", "大学数学", "STEM"},
	{"college_medical_statistics", "大学医学统计", "STEM"},
	{"clinical_knowledge", "临床知识", "Other"},
	{"college_medicine", "大学医学", "Other"},
	{"computer_science", "计算机科学", "STEM"},
	{"computer_security", "计算机安全", "Other"},
	{"conceptual_physics", "概念物理学", "STEM"},
	{"construction_project_management", "建设工程管理", "Other"},
	{"economics", "经济学", "Social Sciences"},
	{"education", "教育学", "Social Sciences"},
	{"elementary_chinese", "小学语文", "Social Sciences"},
	{"elementary_commonsense", "小学常识", "Other"},
	{"elementary_information_and_technology", "小学信息技术", "Other"},
	{"electrical_engineering", "电气工程", "STEM"},
	{"elementary_mathematics", "初等数学", "STEM"},
	{"ethnology", "民族学", "Social Sciences"},
	{"food_science", "食品科学", "Other"},
	{"genetics", "遗传学", "STEM"},
	{"global_facts", "全球事实", "Humanities"},
	{"high_school_biology", "高中生物", "STEM"},
	{"high_school_chemistry", "高中化学", "STEM"},
	{"high_school_geography", "高中地理", "Social Sciences"},
	{"high_school_mathematics", "高中数学", "STEM"},
	{"high_school_physics", "高中物理学", "STEM"},
	{"high_school_politics", "高中政治", "Social Sciences"},
	{"human_sexuality", "人类性行为", "Other"},
	{"international_law", "国际法学", "Humanities"},
	{"journalism", "新闻学", "Social Sciences"},
	{"jurisprudence", "法理学", "Humanities"},
	{"legal_and_moral_basis", "法律与道德基础", "Other"},
	{"logical", "逻辑学", "Humanities"},
	{"machine_learning", "机器学习", "STEM"},
	{"management", "管理学", "Social Sciences"},
	{"marketing", "市场营销", "Social Sciences"},
	{"marxist_theory", "马克思主义理论", "Humanities"},
	{"modern_chinese", "现代汉语", "Social Sciences"},
	{"nutrition", "营养学", "Other"},
	{"philosophy", "哲学", "Humanities"},
	{"professional_accounting", "专业会计", "Social Sciences"},
	{"professional_law", "专业法学", "Humanities"},
	{"professional_medicine", "专业医学", "Other"},
	{"professional_psychology", "专业心理学", "Social Sciences"},
	{"public_relations", "公共关系", "Social Sciences"},
	{"security_study", "安全研究", "Social Sciences"},
	{"sociology", "社会学", "Social Sciences"},
	{"sports_science", "体育学", "Other"},
	{"traditional_chinese_medicine", "中医中药", "Other"},
	{"virology", "病毒学", "STEM"},
	{"world_history", "世界历史", "Humanities"},
	{"world_religions", "世界宗教", "Humanities"},
}

// mmluCategories gives each of MMLU's 57 subjects its category (MMLU's
// grouping, with business and health under Other); the prompt names a
// subject by its file name with spaces for underscores.
var mmluCategories = map[string]string{
	"abstract_algebra": "STEM", "anatomy": "Other", "astronomy": "STEM", "business_ethics": "Other",
	"clinical_knowledge": "Other", "college_biology": "STEM", "college_chemistry": "STEM",
	"college_computer_science": "STEM", "college_mathematics": "STEM", "college_medicine": "Other",
	"college_physics": "STEM", "computer_security": "STEM", "conceptual_physics": "STEM",
	"econometrics": "Social Sciences", "electrical_engineering": "STEM", "elementary_mathematics": "STEM",
	"formal_logic": "Humanities", "global_facts": "Other", "high_school_biology": "STEM",
	"high_school_chemistry": "STEM", "high_school_computer_science": "STEM",
	"high_school_european_history": "Humanities", "high_school_geography": "Social Sciences",
	"high_school_government_and_politics": "Social Sciences", "high_school_macroeconomics": "Social Sciences",
	"high_school_mathematics": "STEM", "high_school_microeconomics": "Social Sciences",
	"high_school_physics": "STEM", "high_school_psychology": "Social Sciences",
	"high_school_statistics": "STEM", "high_school_us_history": "Humanities",
	"high_school_world_history": "Humanities", "human_aging": "Other", "human_sexuality": "Social Sciences",
	"international_law": "Humanities", "jurisprudence": "Humanities", "logical_fallacies": "Humanities",
	"machine_learning": "STEM", "management": "Other", "marketing": "Other", "medical_genetics": "Other",
	"miscellaneous": "Other", "moral_disputes": "Humanities", "moral_scenarios": "Humanities",
	"nutrition": "Other", "philosophy": "Humanities", "prehistory": "Humanities",
	"professional_accounting": "Other", "professional_law": "Humanities", "professional_medicine": "Other",
	"professional_psychology": "Social Sciences", "public_relations": "Social Sciences",
	"security_studies": "Social Sciences", "sociology": "Social Sciences", "us_foreign_policy": "Social Sciences",
	"virology": "Other", "world_religions": "Humanities",
}

// mmluSubjects lists MMLU's subjects in name order, as LLaMA-Factory
// evaluates them.
func mmluSubjects() []Subject {
	var out []Subject
	for k, c := range mmluCategories {
		out = append(out, Subject{k, strings.ReplaceAll(k, "_", " "), c})
	}
	sortSubjects(out)
	return out
}
